package proxy

import (
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/miekg/dns"

	"cmp"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/policy"
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

// rule is a compiled first-match-wins rule.
type rule struct {
	matcher
	kind actionKind
	pool *poolSnap // actForward; nil means the default pool
	// nocache says the answer to a query this rule forwards is neither
	// looked up in nor stored into the packet cache. The rule's pool is
	// already a cache-less view of the configured one, so the hot path
	// needs no check of its own; the flag is there for code that wants it.
	nocache bool
	// uncached is pool without its cache, for queries whose answers must
	// not be cached (opcodes other than QUERY: the cache key has none).
	uncached *poolSnap
	spoof4   [][4]byte
	spoof6   [][16]byte
	cname    []byte // wire format; actSpoof with a CNAME target
	rcode    int    // actRcode
	rl       *rateLimiter
	rlOver   actionKind // actDrop, actRefuse or actTruncate
	logs     *logLimiter
	hits     *atomic.Uint64
	line     int
	index    int
}

// matcher is a compiled match: every condition set must hold.
type matcher struct {
	names    nameSet // exact names
	suffixes nameSet
	qtypes   []uint16
	clients  cidrSet
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

// queryFacts is what rules match on, gathered once per query.
type queryFacts struct {
	v      *msgView
	client netip.Addr // unmapped
	tr     dnswire.Transport
}

func (m *matcher) match(q *queryFacts) bool {
	v := q.v
	if m.opcodes != 0 && m.opcodes&(1<<v.Opcode()) == 0 {
		return false
	}
	if len(m.qtypes) > 0 && !slices.Contains(m.qtypes, v.QType) {
		return false
	}
	if m.rd >= 0 && (v.Flags&dnswire.FlagRD != 0) != (m.rd == 1) {
		return false
	}
	if m.transports != 0 && m.transports&q.tr == 0 {
		return false
	}
	if !m.names.empty() && !m.names.has(v.Name()) {
		return false
	}
	if !m.suffixes.empty() && !m.suffixes.hasSuffixOf(v.Name()) {
		return false
	}
	if !m.clients.empty() && !m.clients.contains(q.client) {
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
		clients:  newCIDRSet(c.Client),
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

// nameSet holds wire-format names, found by hash then checked byte for byte:
// a lookup costs one hash per label boundary and a binary search, not a scan
// of the set, and allocates nothing.
type nameSet struct {
	hashes []uint64 // sorted
	names  [][]byte // names[i] has hashes[i]
}

func newNameSet(names []string) nameSet {
	type entry struct {
		h uint64
		n []byte
	}
	var es []entry
	for _, n := range names {
		w := wireName(n)
		es = append(es, entry{policy.HashName(w), w})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.h, b.h) })
	var s nameSet
	for _, e := range es {
		s.hashes = append(s.hashes, e.h)
		s.names = append(s.names, e.n)
	}
	return s
}

func (s *nameSet) empty() bool { return len(s.hashes) == 0 }

// has reports whether the lowercase wire name w is in the set.
func (s *nameSet) has(w []byte) bool {
	h := policy.HashName(w)
	i, _ := slices.BinarySearch(s.hashes, h)
	for ; i < len(s.hashes) && s.hashes[i] == h; i++ {
		if string(s.names[i]) == string(w) {
			return true
		}
	}
	return false
}

// hasSuffixOf reports whether any suffix of w at a label boundary (w itself
// and the root included) is in the set.
func (s *nameSet) hasSuffixOf(w []byte) bool {
	for i := 0; i < len(w); i += int(w[i]) + 1 {
		if s.has(w[i:]) {
			return true
		}
		if w[i] == 0 {
			break
		}
	}
	return false
}

// wireName turns a lowercase presentation name ("example.com.") into wire
// format. Config validation has already checked the labels.
func wireName(name string) []byte {
	// miekg/dns packs escapes (\. and \DDD) the way a resolver reads them;
	// lowercase after packing, so an escaped byte is folded like any other.
	buf := make([]byte, dnswire.MaxNameLen+1)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return []byte{0} // config validation has already refused it
	}
	w := buf[:n]
	for i := 0; i < len(w) && w[i] != 0; i += int(w[i]) + 1 {
		for j := i + 1; j <= i+int(w[i]) && j < len(w); j++ {
			if 'A' <= w[j] && w[j] <= 'Z' {
				w[j] += 'a' - 'A'
			}
		}
	}
	return w
}

// compileRules turns the config's rules into the snapshot's. hits carries
// the per-rule counters across rebuilds of the same config. A rule that
// forwards without caching gets a cache-less view of its pool.
func compileRules(cfg []config.Rule, pools map[string]*poolSnap, hits []atomic.Uint64) []rule {
	out := make([]rule, 0, len(cfg))
	for i := range cfg {
		rc := &cfg[i]
		r := rule{matcher: compileMatch(&rc.Match), hits: &hits[i], line: rc.Line, index: i}
		if !namesOpcode(&rc.Match) {
			// RFC 8906: other opcodes get NOTIMP unless a rule asks
			// for them by name.
			r.opcodes = 1 << 0
		}
		compileAction(&r, &rc.Action, pools)
		out = append(out, r)
	}
	return out
}

func compileAction(r *rule, a *config.Action, pools map[string]*poolSnap) {
	switch {
	case a.Pool != "" || a.NoCache:
		r.kind = actForward
		if a.Pool != "" {
			r.pool = pools[a.Pool]
		} else {
			r.pool = pools[defaultPoolName(pools)]
		}
		r.uncached = r.pool
		if r.pool != nil && r.pool.cache != nil {
			nc := *r.pool
			nc.cache = nil
			r.uncached = &nc
		}
		if a.NoCache {
			r.nocache = true
			r.pool = r.uncached
		}
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
		r.kind, r.cname = actSpoof, wireName(a.SpoofCNAME)
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
// the only pool (config validation asks nocache without a pool for one of
// the two).
func defaultPoolName(pools map[string]*poolSnap) string {
	if _, ok := pools["default"]; ok || len(pools) != 1 {
		return "default"
	}
	for name := range pools {
		return name
	}
	return ""
}

// carryRuleState hands the per-source rate limiters and log limiters of
// prev's rules to the same rules in rules, so a snapshot rebuilt for a
// backend's change of state (same config, same hit counters) does not
// give every source a fresh burst. TODO(lead): in rebuild, use
// snap.rules = carryRuleState(compileRules(...), p.snap.Load()).
func carryRuleState(rules []rule, prev *snapshot) []rule {
	if prev == nil {
		return rules
	}
	for i := range rules {
		if i >= len(prev.rules) || prev.rules[i].hits != rules[i].hits || prev.rules[i].kind != rules[i].kind {
			continue
		}
		if prev.rules[i].rl != nil {
			rules[i].rl = prev.rules[i].rl
		}
		if prev.rules[i].logs != nil {
			rules[i].logs = prev.rules[i].logs
		}
	}
	return rules
}
