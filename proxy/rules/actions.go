package rules

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/srctable"
)

// ruleLogInterval spaces the log lines of one log rule: ten a second say
// what a rule sees without letting a flood fill the disk.
const ruleLogInterval = int64(100 * time.Millisecond)

// Eval returns the first rule that matches and decides the query, or nil.
// Rules that log, rate limit (under the rate) or truncate a query that did
// not come over UDP count their hit and go on to the next rule. now is
// monotonic nanoseconds (the rate limiters' and log limiters' clock).
func (s *Set) Eval(q *Query, log *slog.Logger, now int64) *Rule {
	for i := range s.rules {
		r := &s.rules[i]
		if !r.match(q) {
			continue
		}
		r.hits.Add(1)
		switch r.kind {
		case actLog:
			r.logs.log(log, r, q, now)
			continue
		case actRateLimit:
			if r.rl.allow(q.Client, now) {
				continue
			}
			r.rl.limited.Add(1)
		case actTruncate:
			if q.Transport != dnswire.UDP {
				continue
			}
		}
		return r
	}
	return nil
}

// Answer is what a rule that does not forward does to the query msg (parsed
// into v) that came over tr: the outcome, for the caller's counters, and
// the answer appended to out (nothing for Drop).
func (r *Rule) Answer(tr dnswire.Transport, msg []byte, v *dnswire.View, out []byte) (Outcome, []byte) {
	kind := r.kind
	if kind == actRateLimit {
		kind = r.rlOver
		if kind == actTruncate && tr != dnswire.UDP {
			kind = actDrop // TC=1 means nothing over a stream
		}
	}
	switch kind {
	case actRefuse:
		return Refuse, dnswire.AppendReply(out, msg, v, dnswire.RcodeRefused)
	case actSpoof:
		return Spoof, appendSpoof(out, msg, v, r)
	case actRcode:
		o := Rcode
		if r.rcode == dnswire.RcodeNXDomain {
			o = NXDomain
		}
		return o, dnswire.AppendReply(out, msg, v, r.rcode)
	case actTruncate:
		start := len(out)
		out = dnswire.AppendReply(out, msg, v, dnswire.RcodeNoError)
		binary.BigEndian.PutUint16(out[start+2:], binary.BigEndian.Uint16(out[start+2:])|dnswire.FlagTC)
		return Truncate, out
	}
	return Drop, out
}

// Outcome is what a rule's own answer was: the proxy counts each once
// whichever rule made it (a rate limit's over-limit answer included), for
// anyfront_proxy_rule_actions_total.
type Outcome uint8

// The outcomes, in the order of OutcomeNames.
const (
	Refuse Outcome = iota
	Drop
	Spoof
	NXDomain
	Rcode // any other rcode
	Truncate
	NumOutcomes
)

// OutcomeNames are the outcomes' metric labels.
var OutcomeNames = [NumOutcomes]string{"refuse", "drop", "spoof", "nxdomain", "rcode", "truncate"}

// logLimiter spaces one rule's log lines; lines it holds back are counted
// and reported with the next one.
type logLimiter struct {
	next       atomic.Int64
	suppressed atomic.Uint64
}

func (l *logLimiter) log(log *slog.Logger, r *Rule, q *Query, now int64) {
	n := l.next.Load()
	if now < n || !l.next.CompareAndSwap(n, now+ruleLogInterval) {
		l.suppressed.Add(1)
		return
	}
	if log == nil {
		return
	}
	log.Info("rule matched", "rule", r.index, "line", r.line, "qname", dnswire.PresentName(q.View.Name()),
		"qtype", dns.Type(q.View.QType).String(), "client", q.Client, "transport", dnswire.TransportName(q.Transport),
		"suppressed", l.suppressed.Swap(0))
}

// rateLimiter is a ratelimit action's per-source-prefix GCRA (a token
// bucket kept as one timestamp): a bounded table, so a spoofed flood from
// many sources costs memory only up to the bound.
type rateLimiter struct {
	tab      *srctable.Table[int64] // theoretical arrival time per prefix
	v4, v6   int
	interval int64 // nanoseconds per query at the rate
	tau      int64 // how far ahead of now the arrival time may run (burst)
	limited  atomic.Uint64
}

func newRateLimiter(c *config.RuleRateLimit) *rateLimiter {
	interval := int64(time.Second) / int64(max(c.QPS, 1))
	return &rateLimiter{
		tab: srctable.New[int64](c.MaxSources), v4: c.V4Prefix, v6: c.V6Prefix,
		interval: interval, tau: interval * int64(max(c.Burst, 1)-1),
	}
}

// allow reports whether a query from client now is within the rate.
func (rl *rateLimiter) allow(client netip.Addr, now int64) bool {
	key := srctable.SourcePrefix(client, rl.v4, rl.v6)
	sh := rl.tab.Shard(key)
	sh.Lock()
	tat, _ := sh.Get(key)
	t := max(*tat, now)
	ok := t-now <= rl.tau
	if ok {
		*tat = t + rl.interval
	}
	sh.Unlock()
	return ok
}

// appendSpoof appends an answer made from the rule's addresses: A records
// for an A query, AAAA for AAAA, and NOERROR with no answer for any other
// type, as a resolver would answer a name that has only addresses. A CNAME
// rule answers every type with the CNAME.
func appendSpoof(dst, query []byte, v *dnswire.View, r *Rule) []byte {
	start := len(dst)
	dst = dnswire.AppendReply(dst, query, v, dnswire.RcodeNoError)
	// appendReply wrote header, question and maybe OPT; the answers go
	// between question and OPT, so rebuild the tail.
	tailAt := start + v.QEnd
	var optBuf [11]byte
	opt := optBuf[:0]
	if v.HasOPT {
		opt = append(opt, dst[tailAt:]...)
		dst = dst[:tailAt]
	}
	n := 0
	switch {
	case r.cname != nil:
		dst = appendRR(dst, dns.TypeCNAME, r.cname)
		n++
	case v.QType == dns.TypeA:
		for _, a := range r.spoof4 {
			dst = appendRR(dst, dns.TypeA, a[:])
			n++
		}
	case v.QType == dns.TypeAAAA:
		for _, a := range r.spoof6 {
			dst = appendRR(dst, dns.TypeAAAA, a[:])
			n++
		}
	}
	dst = append(dst, opt...)
	binary.BigEndian.PutUint16(dst[start+2:], binary.BigEndian.Uint16(dst[start+2:])|dnswire.FlagAA)
	binary.BigEndian.PutUint16(dst[start+6:], uint16(n))
	return dst
}

func appendRR(dst []byte, typ uint16, rdata []byte) []byte {
	dst = append(dst, 0xC0, dnswire.HeaderLen) // the name: a pointer to the question's
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, 1) // IN
	dst = binary.BigEndian.AppendUint32(dst, spoofTTL)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(rdata)))
	return append(dst, rdata...)
}

// spoofTTL is the TTL of spoofed answers: short, so a rule change is seen
// soon by clients' caches.
const spoofTTL = 60
