package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// rfc8906Probe is one of the RFC 8906 §8 tests (ISC genreport's set), plus
// the TC=1 query of issue 16.
type rfc8906Probe struct {
	name string
	tcp  bool
	make func(zone string) *dns.Msg
}

func rfc8906Probes() []rfc8906Probe {
	soa := func(zone string, edns int, do bool, opts ...dns.EDNS0) *dns.Msg {
		m := new(dns.Msg).SetQuestion(zone, dns.TypeSOA)
		m.RecursionDesired = false
		if edns >= 0 {
			m.SetEdns0(4096, do)
			m.IsEdns0().SetVersion(uint8(edns))
			m.IsEdns0().Option = opts
		}
		return m
	}
	return []rfc8906Probe{
		{name: "dns", make: func(z string) *dns.Msg { return soa(z, -1, false) }},
		{name: "edns", make: func(z string) *dns.Msg { return soa(z, 0, false) }},
		{name: "edns1", make: func(z string) *dns.Msg { return soa(z, 1, false) }},
		{name: "edns@512", make: func(z string) *dns.Msg {
			m := soa(z, 0, true)
			m.Question[0].Qtype = dns.TypeDNSKEY
			m.IsEdns0().SetUDPSize(512)
			return m
		}},
		{name: "ednsopt", make: func(z string) *dns.Msg {
			return soa(z, 0, false, &dns.EDNS0_LOCAL{Code: 100})
		}},
		{name: "edns1opt", make: func(z string) *dns.Msg {
			return soa(z, 1, false, &dns.EDNS0_LOCAL{Code: 100})
		}},
		{name: "do", make: func(z string) *dns.Msg { return soa(z, 0, true) }},
		{name: "ednsflags", make: func(z string) *dns.Msg {
			m := soa(z, 0, false)
			m.IsEdns0().Hdr.Ttl |= 0x40 // an undefined EDNS flag (Z)
			return m
		}},
		{name: "optlist", make: func(z string) *dns.Msg {
			return soa(z, 0, false, &dns.EDNS0_NSID{Code: dns.EDNS0NSID},
				&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, Address: []byte{0, 0, 0, 0}},
				&dns.EDNS0_EXPIRE{Code: dns.EDNS0EXPIRE, Empty: true},
				&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}},
		{name: "ednstcp", tcp: true, make: func(z string) *dns.Msg { return soa(z, 0, false) }},
		{name: "zflag", make: func(z string) *dns.Msg {
			m := soa(z, -1, false)
			m.Zero = true
			return m
		}},
		{name: "type666", make: func(z string) *dns.Msg {
			m := soa(z, -1, false)
			m.Question[0].Qtype = 666
			return m
		}},
		{name: "opcode", make: func(string) *dns.Msg {
			// dig +noedns +norec +header-only +opcode=15
			return &dns.Msg{MsgHdr: dns.MsgHdr{Opcode: 15}}
		}},
		{name: "tc", make: func(z string) *dns.Msg {
			m := soa(z, -1, false)
			m.Truncated = true
			return m
		}},
		{name: "tc over tcp", tcp: true, make: func(z string) *dns.Msg {
			m := soa(z, -1, false)
			m.Truncated = true
			return m
		}},
	}
}

// rfc8906Summary is what must match between anyfront and its backend: rcode
// (extended included), the header flags but AD (anyfront's own error
// answers never claim validation; unbound echoes the query's AD), EDNS
// presence and version, and the section counts. Option values differ by
// design: a cache hit's server cookie is anyfront's own (pcache/clientopts.go).
func rfc8906Summary(r *dns.Msg) string {
	if r == nil {
		return "no answer"
	}
	s := fmt.Sprintf("rcode=%s qr=%v aa=%v tc=%v rd=%v ra=%v cd=%v z=%v qd=%d an=%d ns=%d",
		dns.RcodeToString[r.Rcode], r.Response, r.Authoritative, r.Truncated, r.RecursionDesired,
		r.RecursionAvailable, r.CheckingDisabled, r.Zero, len(r.Question), len(r.Answer), len(r.Ns))
	if o := r.IsEdns0(); o != nil {
		s += fmt.Sprintf(" edns=%d", o.Version())
	}
	return s
}

func rfc8906Ask(t *testing.T, addr string, tcp bool, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second, UDPSize: 65535}
	if tcp {
		c.Net = "tcp"
	}
	m.Id = dns.Id()
	r, _, err := c.Exchange(m, addr)
	if err != nil && !strings.Contains(err.Error(), "overflow") {
		t.Logf("%s: %v", addr, err)
		return nil
	}
	return r
}

// TestLabRFC8906 runs the probe set directly against a backend and through
// anyfront, with and without a cache (twice with one: miss, then hit), for
// BIND 9 (authoritative) and unbound: the answers must agree.
func TestLabRFC8906(t *testing.T) {
	testlab.RequireBinary(t, "named")
	testlab.RequireBinary(t, "unbound")
	named := testlab.StartNamed(t)
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	for _, be := range []struct {
		name, addr, zone string
	}{
		{"BIND", named.Addr.String(), testlab.ConfZone},
		{"unbound", ub.Addr.String(), testlab.DemoZone},
	} {
		for _, cache := range []string{"", "    cache: {size: 1000}\n"} {
			l := runProxy(t, fmt.Sprintf("pools:\n  default:\n    backends: [{name: b1, address: %q}]\n%s", be.addr, cache))
			for _, p := range rfc8906Probes() {
				t.Run(fmt.Sprintf("%s cache=%v %s", be.name, cache != "", p.name), func(t *testing.T) {
					want := rfc8906Summary(rfc8906Ask(t, be.addr, p.tcp, p.make(be.zone)))
					for i := 0; i < 2; i++ {
						got := rfc8906Summary(rfc8906Ask(t, l.addr, p.tcp, p.make(be.zone)))
						if got != want {
							t.Errorf("query %d through anyfront: %s\n                     direct: %s", i+1, got, want)
						}
					}
				})
			}
		}
	}
}
