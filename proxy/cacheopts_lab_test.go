package proxy

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// TestLabCacheClientOptions runs a cache in front of BIND 9 (cookies, NSID,
// TSIG on) and asks as different clients would: no client gets another's
// options, and what only the backend can answer is answered by it.
func TestLabCacheClientOptions(t *testing.T) {
	testlab.RequireBinary(t, "named")
	testlab.RequireBinary(t, "dig")
	n := testlab.StartNamed(t)
	l := runProxy(t, fmt.Sprintf("pools:\n  default:\n    backends: [{name: b1, address: %q}]\n    cache: {size: 1000}\n", n.Addr))
	host, port, _ := strings.Cut(l.addr, ":")
	dig := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := exec.Command("dig", append([]string{"@" + host, "-p", port, "+tries=1", "+time=2"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ask := func(t *testing.T, m *dns.Msg, opts ...dns.EDNS0) *dns.Msg {
		t.Helper()
		if len(opts) > 0 || m.IsEdns0() == nil {
			dnstest.WithOpts(m, opts...)
		}
		r, err := l.exchange("udp", m)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	option := func(r *dns.Msg, code uint16) dns.EDNS0 {
		if o := r.IsEdns0(); o != nil {
			for _, x := range o.Option {
				if x.Option() == code {
					return x
				}
			}
		}
		return nil
	}

	t.Run("a second client gets its own cookie echoed, not the first one's", func(t *testing.T) {
		first := dig(t, "+cookie=0102030405060708", "s1.conf.test")
		if !strings.Contains(first, "COOKIE: 0102030405060708") || !strings.Contains(first, "(good)") {
			t.Fatalf("first (forwarded) answer has no good cookie:\n%s", first)
		}
		second := dig(t, "+cookie=a1a2a3a4a5a6a7a8", "s1.conf.test")
		if strings.Contains(second, "mismatch") || !strings.Contains(second, "COOKIE: a1a2a3a4a5a6a7a8") || !strings.Contains(second, "(good)") {
			t.Errorf("second (cached) answer does not echo its own cookie:\n%s", second)
		}
		r := ask(t, dnstest.Query("s1.conf.test.", dns.TypeA), dnstest.CookieOpt("b1b2b3b4b5b6b7b8"))
		c, _ := option(r, dns.EDNS0COOKIE).(*dns.EDNS0_COOKIE)
		if c == nil || len(c.Cookie) != 48 || c.Cookie[:16] != "b1b2b3b4b5b6b7b8" {
			t.Errorf("hit cookie %v: want the client cookie and a 16-byte server cookie", c)
		}
	})
	t.Run("a client that sends no cookie, NSID or EXPIRE gets none", func(t *testing.T) {
		ask(t, dnstest.Query("s2.conf.test.", dns.TypeA), dnstest.CookieOpt("0102030405060708"), &dns.EDNS0_NSID{Code: dns.EDNS0NSID},
			&dns.EDNS0_EXPIRE{Code: dns.EDNS0EXPIRE, Empty: true})
		ask(t, dnstest.Query("s2.conf.test.", dns.TypeA), dnstest.CookieOpt("0102030405060708"))
		r := ask(t, dnstest.Query("s2.conf.test.", dns.TypeA))
		for _, code := range []uint16{dns.EDNS0COOKIE, dns.EDNS0NSID, dns.EDNS0EXPIRE, dns.EDNS0PADDING} {
			if o := option(r, code); o != nil {
				t.Errorf("cached answer carries %v the client did not ask for", o)
			}
		}
	})
	t.Run("NSID on a cached name is the backend's", func(t *testing.T) {
		ask(t, dnstest.Query("s1.conf.test.", dns.TypeA))
		out := dig(t, "+nsid", "s1.conf.test")
		if !strings.Contains(out, `NSID: `) || !strings.Contains(out, testlab.NamedServerID) {
			t.Errorf("NSID query on a cached name did not reach the backend:\n%s", out)
		}
	})
	t.Run("EXPIRE is the backend's", func(t *testing.T) {
		dig(t, "conf.test", "SOA")
		direct, err := exec.Command("dig", "@127.0.0.1", "-p", fmt.Sprint(n.Addr.Port()), "+expire", "conf.test", "SOA").CombinedOutput()
		if err != nil {
			t.Fatal(err)
		}
		got := dig(t, "+expire", "conf.test", "SOA")
		if strings.Contains(string(direct), "EXPIRE:") != strings.Contains(got, "EXPIRE:") {
			t.Errorf("EXPIRE through anyfront differs from direct:\n%s\n--- direct ---\n%s", got, direct)
		}
	})
	t.Run("a TSIG-signed query after an unsigned one gets the backend's signed answer", func(t *testing.T) {
		ask(t, dnstest.Query("conf.test.", dns.TypeSOA))
		out := dig(t, "-y", "hmac-sha256:k:"+testlab.NamedTSIGSecret, "conf.test", "SOA")
		if !strings.Contains(out, "TSIG PSEUDOSECTION") || !strings.Contains(out, "NOERROR") || strings.Contains(out, "failure") {
			t.Errorf("signed query was not answered signed:\n%s", out)
		}
		s := new(dns.Msg).SetQuestion("conf.test.", dns.TypeSOA)
		s.SetTsig(testlab.NamedTSIGName, dns.HmacSHA256, 300, time.Now().Unix())
		c := &dns.Client{Timeout: 2 * time.Second, TsigSecret: map[string]string{testlab.NamedTSIGName: testlab.NamedTSIGSecret}}
		r, _, err := c.Exchange(s, l.addr)
		if err != nil || r.IsTsig() == nil {
			t.Errorf("signed query through anyfront: %v %v", r, err)
		}
	})
	t.Run("queries the backend refuses as malformed are answered as the backend does", func(t *testing.T) {
		for name, q := range map[string]func() *dns.Msg{
			"OPT owned by a non-root name": func() *dns.Msg {
				q := dnstest.Query("s1.conf.test.", dns.TypeA)
				q.Extra = append(q.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeOPT, Class: 1232}})
				return q
			},
			"two OPTs": func() *dns.Msg {
				q := dnstest.Query("s1.conf.test.", dns.TypeA)
				o := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}}
				q.Extra = append(q.Extra, o, o)
				return q
			},
			"a record in the answer section": func() *dns.Msg {
				q := dnstest.Query("s1.conf.test.", dns.TypeA)
				rr, _ := dns.NewRR("s1.conf.test. 60 IN A 192.0.2.99")
				q.Answer = append(q.Answer, rr)
				return q
			},
		} {
			c := &dns.Client{Timeout: 2 * time.Second}
			want, _, err := c.Exchange(q(), n.Addr.String())
			if err != nil {
				t.Fatalf("%s direct: %v", name, err)
			}
			got, err := l.exchange("udp", q())
			if err != nil {
				t.Fatalf("%s through anyfront: %v", name, err)
			}
			if got.Rcode != want.Rcode || len(got.Answer) != len(want.Answer) {
				t.Errorf("%s: anyfront answered %s with %d answers, BIND %s with %d", name,
					dns.RcodeToString[got.Rcode], len(got.Answer), dns.RcodeToString[want.Rcode], len(want.Answer))
			}
		}
	})
}
