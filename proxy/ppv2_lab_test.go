package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// ppLab is anyfront in front of one unbound that takes only queries behind
// a PROXY v2 header, logs the client each names, and refuses 127.0.0.3:
// anyfront itself sends from 127.0.0.1, so a REFUSED for 127.0.0.3 and an
// answer for 127.0.0.2 can only come from the addresses in the headers.
func ppLab(t *testing.T, extra string) (*lab, *testlab.Unbound) {
	t.Helper()
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{
		ProxyProtocol: true, LogQueries: true, AccessControl: []string{"127.0.0.3/32 refuse"},
	})
	l := runProxy(t, fmt.Sprintf("pools:\n  default:\n    backends:\n      - {name: pp1, address: %q, proxy_protocol: true}\n%s",
		u.Addr.String(), extra))
	return l, u
}

// askFrom sends one query for name to the proxy from the loopback address
// src over network.
func (l *lab) askFrom(t *testing.T, network, src, name string) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, Dialer: &net.Dialer{Timeout: 5 * time.Second}}
	if network == "tcp" {
		c.Dialer.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	} else {
		c.Dialer.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	}
	r, _, err := c.Exchange(dnstest.Query(name, dns.TypeA), l.addr)
	if err != nil {
		t.Fatalf("%s query for %s from %s: %v", network, name, src, err)
	}
	return r
}

func TestLabProxyProtocolToBackend(t *testing.T) {
	l, u := ppLab(t, "")
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network+": the backend sees the client's address", func(t *testing.T) {
			name := "pp-" + network + ".demo.test."
			if r := l.askFrom(t, network, "127.0.0.2", name); r.Rcode != dns.RcodeNameError {
				t.Fatalf("rcode %s, want the backend's NXDOMAIN", dns.RcodeToString[r.Rcode])
			}
			got, err := u.QueriesFor(name)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].String() != "127.0.0.2" {
				t.Fatalf("unbound logged %s from %v, want [127.0.0.2]", name, got)
			}
		})
		t.Run(network+": the backend's ACL applies to the client", func(t *testing.T) {
			if r := l.askFrom(t, network, "127.0.0.3", "pp-refused.demo.test."); r.Rcode != dns.RcodeRefused {
				t.Fatalf("rcode %s, want the backend's REFUSED for 127.0.0.3", dns.RcodeToString[r.Rcode])
			}
		})
	}
	t.Run("tcp: clients never share a backend connection", func(t *testing.T) {
		// Interleaved TCP clients: a shared connection would carry one
		// header for both, and one of them would get the other's verdict.
		var wg sync.WaitGroup
		errs := make(chan error, 40)
		for i := 0; i < 20; i++ {
			for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &dns.Client{Net: "tcp", Timeout: 5 * time.Second,
						Dialer: &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}}
					r, _, err := c.Exchange(dnstest.Query(fmt.Sprintf("mix%d.demo.test.", i), dns.TypeA), l.addr)
					want := dns.RcodeNameError
					if src == "127.0.0.3" {
						want = dns.RcodeRefused
					}
					switch {
					case err != nil:
						errs <- err
					case r.Rcode != want:
						errs <- fmt.Errorf("from %s: rcode %s, want %s", src, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
	t.Run("tcp: past the bound, idle per-client connections make room", func(t *testing.T) {
		l.p.buildMu.Lock()
		tp := l.p.ups["pp1"].tcp
		l.p.buildMu.Unlock()
		tp.SetPPMax(2)
		conns := tp.Conns
		for i := 0; i < 6; i++ { // each exchange is a new client connection
			name := fmt.Sprintf("bound%d.demo.test.", i)
			if r := l.askFrom(t, "tcp", "127.0.0.2", name); r.Rcode != dns.RcodeNameError {
				t.Fatalf("query %d: rcode %s, want NXDOMAIN", i, dns.RcodeToString[r.Rcode])
			}
			if n := conns(); n > 2 {
				t.Fatalf("after query %d: %d backend connections, bound 2", i, n)
			}
		}
	})
}

func TestLabProxyProtocolAllocs(t *testing.T) {
	l, u := ppLab(t, "")
	if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
		t.Errorf("%.2f allocations per query forwarded behind a PROXY header, want 0", avg)
	}
	// The answers came from the backend, so the headers were taken.
	if got, err := u.QueriesFor("www.demo.test."); err != nil || len(got) < 2000 || !slices.ContainsFunc(got, func(a netip.Addr) bool { return a.String() == "127.0.0.1" }) {
		t.Fatalf("unbound logged %d queries for www.demo.test. (err %v), want over 2000 from 127.0.0.1", len(got), err)
	}
}

// Turning proxy_protocol on is a reload: the backend's sockets are
// rebuilt with it, and queries that were dropped for want of a header get
// answers.
func TestLabProxyProtocolReload(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{ProxyProtocol: true})
	pools := func(pp bool) string {
		return fmt.Sprintf("proxy: {timeout: 200ms, retries: 0}\npools:\n  default:\n    backends: [{name: pp1, address: %q, proxy_protocol: %v}]\n", u.Addr.String(), pp)
	}
	l := runProxy(t, pools(false))
	if r := l.askFrom(t, "udp", "127.0.0.2", "before.demo.test."); r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("without a header: rcode %s, want SERVFAIL (the backend drops it)", dns.RcodeToString[r.Rcode])
	}
	cfg, err := config.Parse("lab.yaml", []byte(fmt.Sprintf("listen: [{address: %q}]\n%s", l.addr, pools(true))))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	l.p.Reload(cfg)
	for _, network := range []string{"udp", "tcp"} {
		deadline := time.Now().Add(5 * time.Second)
		for {
			r := l.askFrom(t, network, "127.0.0.2", "after.demo.test.")
			if r.Rcode == dns.RcodeNameError {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after the reload: rcode %s, want the backend's NXDOMAIN", network, dns.RcodeToString[r.Rcode])
			}
			time.Sleep(10 * time.Millisecond) // poll interval, not a settle delay
		}
	}
}
