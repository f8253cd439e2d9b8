// Package rules owns the config's rules once compiled: matching a query's
// facts (name, type, opcode, flags, client, transport) first match wins,
// the answers rules make themselves (refuse, drop, rcode, spoof, truncate),
// the per-source rate limiters and log limiters, and the hit counters and
// admin view of the rules in force.
//
// A Set is compiled once per config and lives as long as that config: its
// counters and limiters carry over every snapshot rebuilt for the same
// config. It is a leaf: it never imports proxy and knows no socket, pool or
// cache; a rule that forwards names its pool, and the proxy core resolves
// the name. It counts only its own rules' hits and limits; what its answers
// add to the proxy's counters, the core counts from the Outcome.
package rules

import (
	"cmp"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/cidrset"
)

// actionKind is what a matching rule does.
type actionKind uint8

const (
	actForward   actionKind = iota // to the rule's pool
	actRefuse                      // REFUSED
	actDrop                        // no answer
	actSpoof                       // addresses or a CNAME
	actRcode                       // an answer with rcode (NXDOMAIN included)
	actTruncate                    // TC=1 over UDP; the next rule otherwise
	actRateLimit                   // over the rate: rlOver; under it: the next rule
	actLog                         // a log line, then the next rule
)

// Set is a config's rules, compiled, in order. It is built once per
// config and shared by every snapshot of that config.
type Set struct {
	cfg   *config.Config
	rules []Rule
}

// Rule is a compiled first-match-wins rule.
type Rule struct {
	matcher
	kind actionKind
	// pool is the pool an actForward rule sends to, the default one
	// resolved.
	pool string
	// nocache says the answer to a query this rule forwards is neither
	// looked up in nor stored into the packet cache.
	nocache bool
	spoof4  [][4]byte
	spoof6  [][16]byte
	cname   []byte // wire format; actSpoof with a CNAME target
	rcode   int    // actRcode
	rl      *rateLimiter
	rlOver  actionKind // actDrop, actRefuse or actTruncate
	logs    *logLimiter
	hits    atomic.Uint64
	line    int
	index   int
}

// Index is the rule's position in its Set, from 0.
func (r *Rule) Index() int { return r.index }

// Forwards reports whether the rule sends the query on, to Pool.
func (r *Rule) Forwards() bool { return r.kind == actForward }

// Pool is the pool a forwarding rule sends to ("default", or the only pool,
// when the rule names none).
func (r *Rule) Pool() string { return r.pool }

// NoCache reports whether a forwarding rule's answers bypass the cache.
func (r *Rule) NoCache() bool { return r.nocache }

// matcher is a compiled match: every condition set must hold.
type matcher struct {
	names    nameSet // exact names
	suffixes nameSet
	qtypes   []uint16
	clients  cidrset.Set
	// opcodes is a bit per opcode; 0 matches any.
	opcodes uint16
	rd      int8 // -1 any, 0 RD clear, 1 RD set
	// transports is a bit per transport; 0 matches any.
	transports dnswire.Transport
	// prob is the match probability scaled to 2^32; 0 means always.
	prob uint64
	all  []matcher
	any  []matcher
	not  *matcher
}

// Query is what rules match on, gathered once per query.
type Query struct {
	View      *dnswire.View
	Client    netip.Addr // unmapped
	Transport dnswire.Transport
}

func (m *matcher) match(q *Query) bool {
	v := q.View
	if m.opcodes != 0 && m.opcodes&(1<<v.Opcode()) == 0 {
		return false
	}
	if len(m.qtypes) > 0 && !slices.Contains(m.qtypes, v.QType) {
		return false
	}
	if m.rd >= 0 && (v.Flags&dnswire.FlagRD != 0) != (m.rd == 1) {
		return false
	}
	if m.transports != 0 && m.transports&q.Transport == 0 {
		return false
	}
	if !m.names.empty() && !m.names.has(v.Name()) {
		return false
	}
	if !m.suffixes.empty() && !m.suffixes.hasSuffixOf(v.Name()) {
		return false
	}
	if !m.clients.Empty() && !m.clients.Contains(q.Client) {
		return false
	}
	for i := range m.all {
		if !m.all[i].match(q) {
			return false
		}
	}
	if len(m.any) > 0 {
		ok := false
		for i := range m.any {
			if m.any[i].match(q) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if m.not != nil && m.not.match(q) {
		return false
	}
	// Probability last, so it thins only what the rest matched.
	return m.prob == 0 || uint64(rand.Uint32()) < m.prob
}

func compileMatch(c *config.Match) matcher {
	m := matcher{
		names:    newNameSet(c.QName),
		suffixes: newNameSet(c.QNameSuffix),
		qtypes:   c.QType,
		clients:  cidrset.New(c.Client),
		rd:       -1,
	}
	for _, op := range c.Opcode {
		m.opcodes |= 1 << (op & 0xF)
	}
	if c.RD != nil {
		m.rd = 0
		if *c.RD {
			m.rd = 1
		}
	}
	for _, t := range c.Transport {
		m.transports |= dnswire.Transports[t]
	}
	if c.Probability > 0 && c.Probability < 1 {
		m.prob = uint64(math.Round(c.Probability * (1 << 32)))
	}
	for i := range c.All {
		m.all = append(m.all, compileMatch(&c.All[i]))
	}
	for i := range c.Any {
		m.any = append(m.any, compileMatch(&c.Any[i]))
	}
	if c.Not != nil {
		n := compileMatch(c.Not)
		m.not = &n
	}
	return m
}

// namesOpcode reports whether a match says anything about opcodes.
func namesOpcode(c *config.Match) bool {
	if len(c.Opcode) > 0 {
		return true
	}
	for i := range c.All {
		if namesOpcode(&c.All[i]) {
			return true
		}
	}
	for i := range c.Any {
		if namesOpcode(&c.Any[i]) {
			return true
		}
	}
	return c.Not != nil && namesOpcode(c.Not)
}

// Compile turns cfg's rules into a Set. A rule that forwards without
// naming a pool goes to the default one: "default", or the only pool
// (config validation asks nocache without a pool for one of the two).
func Compile(cfg *config.Config) *Set {
	s := &Set{cfg: cfg, rules: make([]Rule, len(cfg.Rules))}
	def := defaultPoolName(cfg.Pools)
	for i := range cfg.Rules {
		rc := &cfg.Rules[i]
		r := &s.rules[i]
		r.matcher, r.line, r.index = compileMatch(&rc.Match), rc.Line, i
		if !namesOpcode(&rc.Match) {
			// RFC 8906: other opcodes get NOTIMP unless a rule asks
			// for them by name.
			r.opcodes = 1 << 0
		}
		compileAction(r, &rc.Action, def)
	}
	return s
}

// Config is the config s was compiled from.
func (s *Set) Config() *config.Config {
	if s == nil {
		return nil
	}
	return s.cfg
}

// Len is the number of rules.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.rules)
}

// At is the rule at index i.
func (s *Set) At(i int) *Rule { return &s.rules[i] }

func compileAction(r *Rule, a *config.Action, def string) {
	switch {
	case a.Pool != "" || a.NoCache:
		r.kind, r.pool, r.nocache = actForward, cmp.Or(a.Pool, def), a.NoCache
	case a.Refuse:
		r.kind = actRefuse
	case a.Drop:
		r.kind = actDrop
	case a.NXDomain:
		r.kind, r.rcode = actRcode, dnswire.RcodeNXDomain
	case a.Rcode != nil:
		r.kind, r.rcode = actRcode, *a.Rcode
	case len(a.Spoof) > 0:
		r.kind = actSpoof
		for _, ip := range a.Spoof {
			if ip.Is4() || ip.Is4In6() {
				r.spoof4 = append(r.spoof4, ip.Unmap().As4())
			} else {
				r.spoof6 = append(r.spoof6, ip.As16())
			}
		}
	case a.SpoofCNAME != "":
		r.kind, r.cname = actSpoof, WireName(a.SpoofCNAME)
	case a.Truncate:
		r.kind = actTruncate
	case a.RateLimit != nil:
		r.kind = actRateLimit
		r.rl = newRateLimiter(a.RateLimit)
		r.rlOver = map[string]actionKind{"refuse": actRefuse, "truncate": actTruncate}[a.RateLimit.Over]
		if r.rlOver == actForward {
			r.rlOver = actDrop
		}
	case a.Log:
		r.kind = actLog
		r.logs = &logLimiter{}
	}
}

// defaultPoolName is the pool queries no rule routes go to: "default", or
// the only pool.
func defaultPoolName(pools map[string]*config.Pool) string {
	if _, ok := pools["default"]; ok || len(pools) != 1 {
		return "default"
	}
	for name := range pools {
		return name
	}
	return ""
}

// MayMatch says whether r could match a UDP query of opcode QUERY for name
// (lowercase wire format) and qtype from some client: it answers false
// only when a condition on the name, type, opcode or transport rules the
// query out whoever sends it. The XDP answer publisher asks it, so that
// only answers no rule could touch are served past the proxy.
func (r *Rule) MayMatch(name []byte, qtype uint16) bool { return r.mayMatch(name, qtype) }

func (m *matcher) mayMatch(name []byte, qtype uint16) bool {
	if m.opcodes != 0 && m.opcodes&1 == 0 {
		return false
	}
	if len(m.qtypes) > 0 && !slices.Contains(m.qtypes, qtype) {
		return false
	}
	if m.transports != 0 && m.transports&dnswire.UDP == 0 {
		return false
	}
	if !m.names.empty() && !m.names.has(name) {
		return false
	}
	if !m.suffixes.empty() && !m.suffixes.hasSuffixOf(name) {
		return false
	}
	for i := range m.all {
		if !m.all[i].mayMatch(name, qtype) {
			return false
		}
	}
	if len(m.any) > 0 && !slices.ContainsFunc(m.any, func(a matcher) bool { return a.mayMatch(name, qtype) }) {
		return false
	}
	// A negation may hold for some client or coin toss: assume it does.
	return true
}
