package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// matchRule is Eval for a UDP query, without logging, at time 0.
func matchRule(s *Set, v *dnswire.View, client netip.Addr) *Rule {
	q := Query{View: v, Client: client.Unmap(), Transport: dnswire.UDP}
	return s.Eval(&q, nil, 0)
}

func TestNameSet(t *testing.T) {
	s := newNameSet([]string{"corp.example.", "Blocked.Test.", "."})
	exact := newNameSet([]string{"www.example.com."})
	for _, tt := range []struct {
		name   string
		suffix bool
		exact  bool
	}{
		{"corp.example.", true, false},
		{"a.b.corp.example.", true, false},
		{"xcorp.example.", true, false}, // matches only through the root entry
		{"www.example.com.", true, true},
		{"WWW.Example.COM.", true, true},
	} {
		w := WireName(tt.name)
		if got := s.hasSuffixOf(w); got != tt.suffix {
			t.Errorf("suffix %s = %v", tt.name, got)
		}
		if got := exact.has(w); got != tt.exact {
			t.Errorf("exact %s = %v", tt.name, got)
		}
	}
	noRoot := newNameSet([]string{"corp.example."})
	if noRoot.hasSuffixOf(WireName("xcorp.example.")) {
		t.Error("a suffix must end at a label boundary")
	}
	if !noRoot.hasSuffixOf(WireName("x.corp.example.")) || noRoot.hasSuffixOf(WireName("example.")) {
		t.Error("suffix matching is wrong")
	}
}

func TestMatchRule(t *testing.T) {
	cfg, err := config.Parse("r.yaml", []byte(`
pools:
  default: {backends: [{name: a, address: "127.0.0.1:1"}]}
  corp: {backends: [{name: c, address: "127.0.0.1:2"}]}
rules:
  - {match: {qname_suffix: ["corp.example."]}, action: {pool: corp}}
  - {match: {qtype: [ANY]}, action: {refuse: true}}
  - {match: {qname: ["blocked.example."], client: ["203.0.113.0/24"]}, action: {drop: true}}
  - {match: {client: ["203.0.113.0/24"]}, action: {spoof: ["192.0.2.99", "2001:db8::99"]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	rules := Compile(cfg)
	stranger := netip.MustParseAddr("203.0.113.7")
	local := netip.MustParseAddr("127.0.0.1")
	for _, tt := range []struct {
		name   string
		qname  string
		qtype  uint16
		client netip.Addr
		want   int // rule index, -1 none
	}{
		{"a corp name goes to the corp pool", "Host.Corp.Example.", dns.TypeA, local, 0},
		{"ANY is refused", "x.test.", dns.TypeANY, local, 1},
		{"blocked name from the listed net is dropped", "blocked.example.", dns.TypeA, stranger, 2},
		{"blocked name from elsewhere is not", "blocked.example.", dns.TypeA, local, -1},
		{"the listed net gets spoofed answers", "any.test.", dns.TypeA, stranger, 3},
		{"an unmatched query matches nothing", "www.test.", dns.TypeA, local, -1},
		{"a v4-mapped client matches v4 prefixes", "any.test.", dns.TypeA, netip.AddrFrom16(stranger.As16()), 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var v dnswire.View
			if err := v.ParseQuery(dnstest.Pack(t, dnstest.Query(tt.qname, tt.qtype))); err != nil {
				t.Fatal(err)
			}
			if got := ruleIndex(matchRule(rules, &v, tt.client)); got != tt.want {
				t.Errorf("matched rule %d, want %d", got, tt.want)
			}
		})
	}
	if rules.At(0).hits.Load() != 1 || rules.At(3).hits.Load() != 2 {
		t.Errorf("hit counters: %d %d", rules.At(0).hits.Load(), rules.At(3).hits.Load())
	}
	if !rules.At(0).Forwards() || rules.At(0).Pool() != "corp" {
		t.Error("pool action not resolved")
	}
}

func TestAppendSpoof(t *testing.T) {
	r := &Rule{spoof4: [][4]byte{{192, 0, 2, 99}}, spoof6: [][16]byte{netip.MustParseAddr("2001:db8::99").As16()}}
	for _, tt := range []struct {
		qtype uint16
		edns  bool
		want  string
	}{
		{dns.TypeA, false, "192.0.2.99"},
		{dns.TypeAAAA, true, "2001:db8::99"},
		{dns.TypeTXT, true, ""},
	} {
		q := dnstest.Query("Spoof.Test.", tt.qtype)
		if tt.edns {
			q.SetEdns0(1232, true)
		}
		raw := dnstest.Pack(t, q)
		var v dnswire.View
		if err := v.ParseQuery(raw); err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		if err := m.Unpack(appendSpoof(nil, raw, &v, r)); err != nil {
			t.Fatal(err)
		}
		if m.Rcode != dns.RcodeSuccess || m.Question[0].Name != "Spoof.Test." || (m.IsEdns0() != nil) != tt.edns {
			t.Errorf("%d: %v", tt.qtype, &m)
		}
		if tt.want == "" {
			if len(m.Answer) != 0 {
				t.Errorf("TXT got answers %v", m.Answer)
			}
			continue
		}
		if len(m.Answer) != 1 || m.Answer[0].Header().Ttl != spoofTTL {
			t.Fatalf("answers %v", m.Answer)
		}
		var got string
		switch rr := m.Answer[0].(type) {
		case *dns.A:
			got = rr.A.String()
		case *dns.AAAA:
			got = rr.AAAA.String()
		}
		if got != tt.want {
			t.Errorf("got %s want %s", got, tt.want)
		}
	}
}

// compileYAML compiles the rules of a config whose pools are default and
// corp.
func compileYAML(t testing.TB, rules string) *Set {
	t.Helper()
	cfg, err := config.Parse("r.yaml", []byte(`
pools:
  default: {backends: [{name: a, address: "127.0.0.1:1"}], cache: {size: 100}}
  corp: {backends: [{name: c, address: "127.0.0.1:2"}]}
rules:
`+rules))
	if err != nil {
		t.Fatal(err)
	}
	return Compile(cfg)
}

type testQuery struct {
	name   string
	qtype  uint16
	client string
	tr     dnswire.Transport
	opcode int
	noRD   bool
}

func (tq testQuery) facts(t testing.TB) *Query {
	t.Helper()
	m := dnstest.Query(tq.name, tq.qtype)
	m.Opcode = tq.opcode
	m.RecursionDesired = !tq.noRD
	v := new(dnswire.View)
	if err := v.ParseQuery(dnstest.Pack(t, m)); err != nil && err != dnswire.ErrOpcode {
		t.Fatal(err)
	}
	c := tq.client
	if c == "" {
		c = "127.0.0.1"
	}
	tr := tq.tr
	if tr == 0 {
		tr = dnswire.UDP
	}
	return &Query{View: v, Client: netip.MustParseAddr(c).Unmap(), Transport: tr}
}

func ruleIndex(r *Rule) int {
	if r == nil {
		return -1
	}
	return r.Index()
}

func TestRuleMatches(t *testing.T) {
	rules := compileYAML(t, `
  - {match: {opcode: [NOTIFY]}, action: {pool: corp}}
  - {match: {rd: false, qname_suffix: [norecurse.test]}, action: {refuse: true}}
  - {match: {transport: [tcp, dot], qname_suffix: [streams.test]}, action: {nxdomain: true}}
  - {match: {all: [{qname_suffix: [a.test]}, {qtype: [MX]}]}, action: {rcode: SERVFAIL}}
  - {match: {any: [{qname: [x.b.test]}, {client: ["2001:db8::/32"]}], qname_suffix: [b.test]}, action: {rcode: 4}}
  - {match: {qname_suffix: [c.test], not: {any: [{qtype: [A]}, {client: ["192.0.2.0/24"]}]}}, action: {drop: true}}
  - {match: {qname_suffix: [never.test], probability: 0.000001}, action: {drop: true}}
`)
	for _, tt := range []struct {
		name string
		q    testQuery
		want int
	}{
		{"NOTIFY goes to the rule that names its opcode", testQuery{name: "z.test.", qtype: dns.TypeSOA, opcode: dns.OpcodeNotify}, 0},
		{"UPDATE matches no rule", testQuery{name: "norecurse.test.", qtype: dns.TypeSOA, opcode: dns.OpcodeUpdate, noRD: true}, -1},
		{"RD clear matches rd: false", testQuery{name: "x.norecurse.test.", qtype: dns.TypeA, noRD: true}, 1},
		{"RD set does not match rd: false", testQuery{name: "x.norecurse.test.", qtype: dns.TypeA}, -1},
		{"TCP matches transport tcp", testQuery{name: "streams.test.", qtype: dns.TypeA, tr: dnswire.TCP}, 2},
		{"DoT matches transport dot", testQuery{name: "streams.test.", qtype: dns.TypeA, tr: dnswire.DoT}, 2},
		{"UDP does not match transport tcp", testQuery{name: "streams.test.", qtype: dns.TypeA}, -1},
		{"all: both hold", testQuery{name: "m.a.test.", qtype: dns.TypeMX}, 3},
		{"all: one fails", testQuery{name: "m.a.test.", qtype: dns.TypeA}, -1},
		{"any: the name", testQuery{name: "x.b.test.", qtype: dns.TypeA}, 4},
		{"any: the client", testQuery{name: "y.b.test.", qtype: dns.TypeA, client: "2001:db8::5"}, 4},
		{"any: neither", testQuery{name: "y.b.test.", qtype: dns.TypeA}, -1},
		{"not: neither negated condition holds", testQuery{name: "c.test.", qtype: dns.TypeTXT}, 5},
		{"not: A is excluded", testQuery{name: "c.test.", qtype: dns.TypeA}, -1},
		{"not: the client is excluded", testQuery{name: "c.test.", qtype: dns.TypeTXT, client: "192.0.2.1"}, -1},
		{"a tiny probability practically never matches", testQuery{name: "never.test.", qtype: dns.TypeA}, -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ruleIndex(rules.Eval(tt.q.facts(t), nil, 0)); got != tt.want {
				t.Errorf("matched rule %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRuleProbability(t *testing.T) {
	rules := compileYAML(t, `
  - {match: {probability: 0.25}, action: {drop: true}}
`)
	q := testQuery{name: "p.test.", qtype: dns.TypeA}.facts(t)
	const n = 20000
	for i := 0; i < n; i++ {
		rules.Eval(q, nil, 0)
	}
	if got := float64(rules.At(0).hits.Load()) / n; got < 0.22 || got > 0.28 {
		t.Errorf("probability 0.25 matched %.3f of queries", got)
	}
}

func TestRuleActionsCompile(t *testing.T) {
	rules := compileYAML(t, `
  - {match: {qname: [nc.test]}, action: {nocache: true}}
  - {match: {qname: [nc2.test]}, action: {pool: default, nocache: true}}
  - {match: {qname: [c.test]}, action: {pool: default}}
  - {match: {qname: [cn.test]}, action: {spoof_cname: Target.Example}}
`)
	for i := 0; i < 2; i++ {
		if r := rules.At(i); !r.Forwards() || !r.NoCache() || r.Pool() != "default" {
			t.Errorf("rule %d: nocache must forward to default without the cache, got pool %q nocache %v", i, r.Pool(), r.NoCache())
		}
	}
	if rules.At(2).NoCache() {
		t.Error("a plain pool rule lost its cache")
	}
	if string(rules.At(3).cname) != "\x06target\x07example\x00" {
		t.Errorf("cname %q", rules.At(3).cname)
	}
}

func TestRuleNonTerminal(t *testing.T) {
	rules := compileYAML(t, `
  - {match: {qname_suffix: [test]}, action: {log: true}}
  - {match: {qname_suffix: [tc.test]}, action: {truncate: true}}
  - {match: {qname_suffix: [rl.test]}, action: {ratelimit: {qps: 10, burst: 5, v4_prefix: 24}}}
  - {match: {qname_suffix: [test]}, action: {pool: corp}}
`)
	t.Run("log goes on to the next rule", func(t *testing.T) {
		if got := ruleIndex(rules.Eval(testQuery{name: "a.test.", qtype: dns.TypeA}.facts(t), nil, 0)); got != 3 {
			t.Errorf("got %d", got)
		}
		if rules.At(0).hits.Load() != 1 || rules.At(3).hits.Load() != 1 {
			t.Errorf("hits %d %d", rules.At(0).hits.Load(), rules.At(3).hits.Load())
		}
	})
	t.Run("truncate decides dnswire.UDP and passes dnswire.TCP on", func(t *testing.T) {
		if got := ruleIndex(rules.Eval(testQuery{name: "tc.test.", qtype: dns.TypeA}.facts(t), nil, 0)); got != 1 {
			t.Errorf("udp: %d", got)
		}
		if got := ruleIndex(rules.Eval(testQuery{name: "tc.test.", qtype: dns.TypeA, tr: dnswire.TCP}.facts(t), nil, 0)); got != 3 {
			t.Errorf("tcp: %d", got)
		}
	})
	t.Run("ratelimit passes the burst, stops the rest, refills with time, per prefix", func(t *testing.T) {
		q := testQuery{name: "x.rl.test.", qtype: dns.TypeA, client: "198.51.100.7"}.facts(t)
		other := testQuery{name: "x.rl.test.", qtype: dns.TypeA, client: "198.51.101.7"}.facts(t)
		now := int64(time.Hour)
		for i := 0; i < 5; i++ {
			if got := ruleIndex(rules.Eval(q, nil, now)); got != 3 {
				t.Fatalf("query %d of the burst: rule %d", i, got)
			}
		}
		if got := ruleIndex(rules.Eval(q, nil, now)); got != 2 {
			t.Fatalf("over the burst: rule %d, want the ratelimit rule", got)
		}
		if got := ruleIndex(rules.Eval(other, nil, now)); got != 3 {
			t.Fatalf("another /24 is limited too: %d", got)
		}
		if got := ruleIndex(rules.Eval(q, nil, now+int64(100*time.Millisecond))); got != 3 {
			t.Fatalf("after 1/qps: rule %d", got)
		}
		if rules.At(2).rl.limited.Load() != 1 {
			t.Errorf("limited = %d", rules.At(2).rl.limited.Load())
		}
	})
}

func TestLogLimiter(t *testing.T) {
	var l logLimiter
	r := &Rule{}
	q := testQuery{name: "a.test.", qtype: dns.TypeA}.facts(t)
	for i := int64(0); i < 100; i++ {
		l.log(nil, r, q, i*int64(time.Millisecond)) // 100 lines asked over 100ms
	}
	if got := l.suppressed.Load(); got != 99 {
		t.Errorf("suppressed %d of 100 within one interval, want 99", got)
	}
}

func TestAppendSpoofCNAME(t *testing.T) {
	r := &Rule{cname: WireName("portal.example.net.")}
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX} {
		q := dnstest.Query("Www.Example.Org.", qtype)
		q.SetEdns0(1232, false)
		raw := dnstest.Pack(t, q)
		var v dnswire.View
		if err := v.ParseQuery(raw); err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		if err := m.Unpack(appendSpoof(nil, raw, &v, r)); err != nil {
			t.Fatal(err)
		}
		c, ok := m.Answer[0].(*dns.CNAME)
		if len(m.Answer) != 1 || !ok || c.Target != "portal.example.net." || c.Hdr.Name != "Www.Example.Org." || m.IsEdns0() == nil {
			t.Errorf("%s: %v", dns.TypeToString[qtype], &m)
		}
	}
}

// BenchmarkRules10k measures a query through a rule list whose first rule
// holds 10,000 suffixes and does not match, then a catch-all.
func BenchmarkRules10k(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("  - match:\n      qname_suffix:\n")
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(&sb, "        - blocked%d.example%d.com\n", i, i%97)
	}
	sb.WriteString("    action: {drop: true}\n")
	sb.WriteString("  - {match: {client: [\"192.0.2.0/24\", \"198.51.100.0/24\", \"2001:db8::/32\", \"10.0.0.0/8\", \"172.16.0.0/12\", \"192.168.0.0/16\", \"100.64.0.0/10\", \"203.0.113.0/24\", \"169.254.0.0/16\"]}, action: {refuse: true}}\n")
	sb.WriteString("  - {match: {qtype: [ANY]}, action: {refuse: true}}\n")
	sb.WriteString("  - {action: {pool: default}}\n")
	rules := compileYAML(b, sb.String())
	q := testQuery{name: "www.some.long.name.under.example.com.", qtype: dns.TypeA}.facts(b)
	hit := testQuery{name: "a.b.blocked42.example42.com.", qtype: dns.TypeA}.facts(b)
	if r := rules.Eval(q, nil, 0); ruleIndex(r) != 3 {
		b.Fatalf("miss matched rule %d", ruleIndex(r))
	}
	if r := rules.Eval(hit, nil, 0); ruleIndex(r) != 0 {
		b.Fatalf("hit matched rule %d", ruleIndex(r))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i&1 == 0 {
			rules.Eval(q, nil, 0)
		} else {
			rules.Eval(hit, nil, 0)
		}
	}
}

func TestStatus(t *testing.T) {
	rules := compileYAML(t, `
  - {match: {qname: [rl.test]}, action: {ratelimit: {qps: 1, burst: 1}}}
  - {match: {qname_suffix: [test]}, action: {refuse: true}}
`)
	q := testQuery{name: "rl.test.", qtype: dns.TypeA}.facts(t)
	for i := 0; i < 3; i++ {
		rules.Eval(q, nil, int64(time.Hour))
	}
	st := rules.Status()
	if len(st) != 2 || st[0].Index != 0 || st[1].Index != 1 || st[0].Line == 0 || st[1].Line != st[0].Line+1 {
		t.Fatalf("%+v", st)
	}
	// The burst passes to the next rule; the two over it stop at the limit.
	if st[0].Hits != 3 || st[0].Limited == nil || *st[0].Limited != 2 || st[1].Hits != 1 || st[1].Limited != nil {
		t.Errorf("counters: %+v %+v", st[0], st[1])
	}
	if st[1].Action["refuse"] != true || st[1].Match["qname_suffix"].([]string)[0] != "test." {
		t.Errorf("view: %+v", st[1])
	}
	var none *Set
	if got := none.Status(); got == nil || len(got) != 0 || none.Len() != 0 {
		t.Errorf("a nil set lists %v", got)
	}
}
