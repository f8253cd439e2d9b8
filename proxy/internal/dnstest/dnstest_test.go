package dnstest

import (
	"testing"

	"github.com/miekg/dns"
)

func TestPackUnpackRoundTrip(t *testing.T) {
	q := WithOpts(Query("www.example.com.", dns.TypeAAAA), CookieOpt("0102030405060708"))
	m := Unpack(t, Pack(t, q))
	if m.Id != 0x1234 || len(m.Question) != 1 || m.Question[0].Name != "www.example.com." || m.Question[0].Qtype != dns.TypeAAAA {
		t.Fatalf("round trip changed the query: %v", m)
	}
	o := m.IsEdns0()
	if o == nil || o.UDPSize() != 1232 || len(o.Option) != 1 || o.Option[0].(*dns.EDNS0_COOKIE).Cookie != "0102030405060708" {
		t.Fatalf("OPT %v, want 1232 with the cookie", o)
	}
	if r := BigAnswer(t, q, 10); len(r.Answer) != 10 || r.Len() < 1000 || !r.Response {
		t.Fatalf("BigAnswer: %d records, %d bytes", len(r.Answer), r.Len())
	}
}

func TestECSQueryCarriesTheSubnet(t *testing.T) {
	q := Unpack(t, ECSQuery(t, 4096, true, "2001:db8:1::/48"))
	s := SubnetOf(t, q)
	if len(s) != 1 || s[0].Family != 2 || s[0].SourceNetmask != 48 || s[0].Address.String() != "2001:db8:1::" {
		t.Fatalf("ECS %v, want 2001:db8:1::/48", s)
	}
	if o := q.IsEdns0(); o.UDPSize() != 4096 || !o.Do() || len(o.Option) != 2 {
		t.Fatalf("OPT %v, want 4096 DO cookie+ECS", o)
	}
	a := Unpack(t, ECSAnswer(t, Pack(t, q), 24, false))
	if s := SubnetOf(t, a); len(s) != 1 || s[0].SourceScope != 24 || s[0].SourceNetmask != 48 || !a.Response {
		t.Fatalf("answer ECS %v, want /48 scope 24", s)
	}
	if s := SubnetOf(t, Unpack(t, ECSQuery(t, 0, false, ""))); len(s) != 0 {
		t.Fatalf("plain query has ECS %v", s)
	}
}
