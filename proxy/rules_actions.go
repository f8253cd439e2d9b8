package proxy

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
)

// ruleLogInterval spaces the log lines of one log rule: ten a second say
// what a rule sees without letting a flood fill the disk.
const ruleLogInterval = int64(100 * time.Millisecond)

// matchRule is evalRules for a UDP query, without logging, at time 0.
func matchRule(rules []rule, v *msgView, client netip.Addr) *rule {
	q := queryFacts{v: v, client: client.Unmap(), tr: dnswire.UDP}
	return evalRules(rules, &q, nil, 0)
}

// evalRules returns the first rule that matches and decides the query, or
// nil. Rules that log, rate limit (under the rate) or truncate a query that
// did not come over UDP count their hit and go on to the next rule.
func evalRules(rules []rule, q *queryFacts, log *slog.Logger, now int64) *rule {
	for i := range rules {
		r := &rules[i]
		if !r.match(q) {
			continue
		}
		r.hits.Add(1)
		switch r.kind {
		case actLog:
			r.logs.log(log, r, q, now)
			continue
		case actRateLimit:
			if r.rl.allow(q.client, now) {
				continue
			}
			r.rl.limited.Add(1)
		case actTruncate:
			if q.tr != dnswire.UDP {
				continue
			}
		}
		return r
	}
	return nil
}

// ruleAnswer is what a rule that does not forward does to the query: the
// verdict and the answer appended to out.
func (p *Proxy) ruleAnswer(r *rule, tr dnswire.Transport, msg []byte, v *msgView, out []byte) (verdict, []byte) {
	kind := r.kind
	if kind == actRateLimit {
		kind = r.rlOver
		if kind == actTruncate && tr != dnswire.UDP {
			kind = actDrop // TC=1 means nothing over a stream
		}
	}
	switch kind {
	case actRefuse:
		p.Stats.RuleRefused.Add(1)
		p.Stats.RuleActions[raRefuse].Add(1)
		return vReply, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeRefused)
	case actSpoof:
		p.Stats.RuleSpoofed.Add(1)
		p.Stats.RuleActions[raSpoof].Add(1)
		return vReply, appendSpoof(out, msg, v, r)
	case actRcode:
		if r.rcode == dnswire.RcodeNXDomain {
			p.Stats.RuleActions[raNXDomain].Add(1)
		} else {
			p.Stats.RuleActions[raRcode].Add(1)
		}
		return vReply, dnswire.AppendReply(out, msg, &v.View, r.rcode)
	case actTruncate:
		p.Stats.RuleActions[raTruncate].Add(1)
		start := len(out)
		out = dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeNoError)
		binary.BigEndian.PutUint16(out[start+2:], binary.BigEndian.Uint16(out[start+2:])|dnswire.FlagTC)
		return vReply, out
	}
	p.Stats.RuleDropped.Add(1)
	p.Stats.RuleActions[raDrop].Add(1)
	return vDrop, out
}

// ruleAction indexes Stats.RuleActions: the answers rules make, each
// counted once whichever rule made it (a rate limit's over-limit answer
// included), for anyfront_proxy_rule_actions_total.
type ruleAction uint8

const (
	raRefuse ruleAction = iota
	raDrop
	raSpoof
	raNXDomain
	raRcode // any other rcode
	raTruncate
	numRuleActions
)

var ruleActionNames = [numRuleActions]string{"refuse", "drop", "spoof", "nxdomain", "rcode", "truncate"}

// logLimiter spaces one rule's log lines; lines it holds back are counted
// and reported with the next one.
type logLimiter struct {
	next       atomic.Int64
	suppressed atomic.Uint64
}

func (l *logLimiter) log(log *slog.Logger, r *rule, q *queryFacts, now int64) {
	n := l.next.Load()
	if now < n || !l.next.CompareAndSwap(n, now+ruleLogInterval) {
		l.suppressed.Add(1)
		return
	}
	if log == nil {
		return
	}
	log.Info("rule matched", "rule", r.index, "line", r.line, "qname", dnswire.PresentName(q.v.Name()),
		"qtype", dns.Type(q.v.QType).String(), "client", q.client, "transport", dnswire.TransportName(q.tr),
		"suppressed", l.suppressed.Swap(0))
}

// dnswire.PresentName turns a wire name into text, for logs only.

// rateLimiter is a ratelimit action's per-source-prefix GCRA (a token
// bucket kept as one timestamp): a bounded table, so a spoofed flood from
// many sources costs memory only up to the bound.
type rateLimiter struct {
	tab      *srcTable[int64] // theoretical arrival time per prefix
	v4, v6   int
	interval int64 // nanoseconds per query at the rate
	tau      int64 // how far ahead of now the arrival time may run (burst)
	limited  atomic.Uint64
}

func newRateLimiter(c *config.RuleRateLimit) *rateLimiter {
	interval := int64(time.Second) / int64(max(c.QPS, 1))
	return &rateLimiter{
		tab: newSrcTable[int64](c.MaxSources), v4: c.V4Prefix, v6: c.V6Prefix,
		interval: interval, tau: interval * int64(max(c.Burst, 1)-1),
	}
}

// allow reports whether a query from client now is within the rate.
func (rl *rateLimiter) allow(client netip.Addr, now int64) bool {
	key := sourcePrefix(client, rl.v4, rl.v6)
	sh := rl.tab.shard(key)
	sh.mu.Lock()
	tat, _ := sh.get(key)
	t := max(*tat, now)
	ok := t-now <= rl.tau
	if ok {
		*tat = t + rl.interval
	}
	sh.mu.Unlock()
	return ok
}

// appendSpoof appends an answer made from the rule's addresses: A records
// for an A query, AAAA for AAAA, and NOERROR with no answer for any other
// type, as a resolver would answer a name that has only addresses. A CNAME
// rule answers every type with the CNAME.
func appendSpoof(dst, query []byte, v *msgView, r *rule) []byte {
	start := len(dst)
	dst = dnswire.AppendReply(dst, query, &v.View, dnswire.RcodeNoError)
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
