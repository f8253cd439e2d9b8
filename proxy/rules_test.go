package proxy

import (
	"net/netip"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
)

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
		w := wireName(tt.name)
		if got := s.hasSuffixOf(w); got != tt.suffix {
			t.Errorf("suffix %s = %v", tt.name, got)
		}
		if got := exact.has(w); got != tt.exact {
			t.Errorf("exact %s = %v", tt.name, got)
		}
	}
	noRoot := newNameSet([]string{"corp.example."})
	if noRoot.hasSuffixOf(wireName("xcorp.example.")) {
		t.Error("a suffix must end at a label boundary")
	}
	if !noRoot.hasSuffixOf(wireName("x.corp.example.")) || noRoot.hasSuffixOf(wireName("example.")) {
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
	corp := &poolSnap{name: "corp"}
	hits := make([]atomic.Uint64, len(cfg.Rules))
	rules := compileRules(cfg.Rules, map[string]*poolSnap{"corp": corp}, hits)
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
			var v msgView
			if err := v.parseQuery(pack(t, query(tt.qname, tt.qtype))); err != nil {
				t.Fatal(err)
			}
			r := matchRule(rules, &v, tt.client)
			got := -1
			for i := range rules {
				if r == &rules[i] {
					got = i
				}
			}
			if got != tt.want {
				t.Errorf("matched rule %d, want %d", got, tt.want)
			}
		})
	}
	if hits[0].Load() != 1 || hits[3].Load() != 2 {
		t.Errorf("hit counters: %d %d", hits[0].Load(), hits[3].Load())
	}
	if rules[0].pool != corp {
		t.Error("pool action not resolved")
	}
}

func TestAppendSpoof(t *testing.T) {
	r := &rule{spoof4: [][4]byte{{192, 0, 2, 99}}, spoof6: [][16]byte{netip.MustParseAddr("2001:db8::99").As16()}}
	for _, tt := range []struct {
		qtype uint16
		edns  bool
		want  string
	}{
		{dns.TypeA, false, "192.0.2.99"},
		{dns.TypeAAAA, true, "2001:db8::99"},
		{dns.TypeTXT, true, ""},
	} {
		q := query("Spoof.Test.", tt.qtype)
		if tt.edns {
			q.SetEdns0(1232, true)
		}
		raw := pack(t, q)
		var v msgView
		if err := v.parseQuery(raw); err != nil {
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
