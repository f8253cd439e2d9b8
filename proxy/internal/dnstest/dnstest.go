// Package dnstest holds message builders for tests; never imported by
// production code.
package dnstest

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// Pack packs m, failing t if it does not pack.
func Pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Unpack unpacks b, failing t if it is not a DNS message.
func Unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	return m
}

// Query is a recursive query for name and qtype with the fixed ID 0x1234, so
// tests can check the ID survives.
func Query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	return m
}

// BigAnswer is a reply to q with n TXT records of about 100 bytes each, to
// push an answer past a size limit.
func BigAnswer(t testing.TB, q *dns.Msg, n int) *dns.Msg {
	t.Helper()
	r := new(dns.Msg)
	r.SetReply(q)
	for i := 0; i < n; i++ {
		rr, err := dns.NewRR(q.Question[0].Name + " 300 IN TXT \"" + strings.Repeat("x", 90) + "\"")
		if err != nil {
			t.Fatal(err)
		}
		r.Answer = append(r.Answer, rr)
	}
	return r
}

// ECSQuery is a packed query for www.Example.com/A with optional EDNS
// (udp > 0) with DO, a cookie and a client subnet.
func ECSQuery(t testing.TB, udp uint16, cookie bool, subnet string) []byte {
	t.Helper()
	m := Query("www.Example.com.", dns.TypeA)
	if udp > 0 {
		m.SetEdns0(udp, true)
		o := m.IsEdns0()
		if cookie {
			o.Option = append(o.Option, CookieOpt("0102030405060708"))
		}
		if subnet != "" {
			p := netip.MustParsePrefix(subnet)
			fam := uint16(1)
			if p.Addr().Is6() {
				fam = 2
			}
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: fam,
				SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())})
		}
	}
	return Pack(t, m)
}

// SubnetOf is every client subnet option in m's OPT record.
func SubnetOf(t testing.TB, m *dns.Msg) []*dns.EDNS0_SUBNET {
	t.Helper()
	var s []*dns.EDNS0_SUBNET
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				s = append(s, e)
			}
		}
	}
	return s
}

// ECSAnswer is a backend's packed answer to the packed query q, echoing its
// subnet with scope (negative: no ECS) and, if asked, a cookie.
func ECSAnswer(t testing.TB, q []byte, scope int, cookie bool) []byte {
	t.Helper()
	qm := Unpack(t, q)
	m := new(dns.Msg).SetReply(qm)
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qm.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A: net.IP{192, 0, 2, 10}})
	m.SetEdns0(1232, false)
	o := m.IsEdns0()
	if cookie {
		o.Option = append(o.Option, CookieOpt("0102030405060708"))
	}
	if scope >= 0 {
		s := SubnetOf(t, qm)
		if len(s) == 0 {
			t.Fatal("ECSAnswer: query carries no ECS to echo")
		}
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: s[0].Family,
			SourceNetmask: s[0].SourceNetmask, SourceScope: uint8(scope), Address: s[0].Address})
	}
	return Pack(t, m)
}

// CookieOpt is a COOKIE option with the hex cookie (client, or client and
// server).
func CookieOpt(hexCookie string) *dns.EDNS0_COOKIE {
	return &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: hexCookie}
}

// WithOpts gives q an OPT record (1232 bytes, no DO) carrying opts and
// returns q.
func WithOpts(q *dns.Msg, opts ...dns.EDNS0) *dns.Msg {
	q.SetEdns0(1232, false)
	q.IsEdns0().Option = append(q.IsEdns0().Option, opts...)
	return q
}
