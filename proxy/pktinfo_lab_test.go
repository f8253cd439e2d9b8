package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// TestLabWildcardAnswersFromAddressAsked listens on 0.0.0.0 and :: and asks
// on 127.0.0.2 and ::1, which the kernel would not pick as the source of a
// reply to 127.0.0.1-bound or routed clients. miekg's client is a connected
// UDP socket: an answer from any other address never reaches it, so a
// missing pktinfo shows as a timeout. The two wildcards take two ports: Go
// listens for TCP on [::] dual-stack, which would take 0.0.0.0's port.
func TestLabWildcardAnswersFromAddressAsked(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	port6, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dead, err := testlab.FreePort() // nothing listens: the backend refuses
	if err != nil {
		t.Fatal(err)
	}
	v4 := fmt.Sprintf("127.0.0.2:%d", port)
	v6 := fmt.Sprintf("[::1]:%d", port6)
	runConfig(t, v4, fmt.Sprintf(`listen: [{address: "0.0.0.0:%d"}, {address: "[::]:%d"}]
proxy: {timeout: 300ms}
pools:
  default:
    backends: [{name: r1, address: %q}]
    cache: {size: 1000}
  dead:
    backends: [{name: d1, address: "127.0.0.1:%d"}]
rules:
  - {match: {qname_suffix: ["dead.demo.test."]}, action: {pool: dead}}
`, port, port6, ub.Addr, dead))
	ask := func(t *testing.T, addr, name string) *dns.Msg {
		t.Helper()
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		r, _, err := c.Exchange(dnstest.Query(name, dns.TypeA), addr)
		if err != nil {
			t.Fatalf("%s to %s: %v", name, addr, err)
		}
		return r
	}
	for _, addr := range []string{v4, v6} {
		t.Run("forwarded answer from "+addr, func(t *testing.T) {
			wantA(t, ask(t, addr, "www.demo.test."), "192.0.2.11")
		})
		t.Run("cache hit from "+addr, func(t *testing.T) {
			wantA(t, ask(t, addr, "www.demo.test."), "192.0.2.11")
		})
		t.Run("SERVFAIL after a refusing backend from "+addr, func(t *testing.T) {
			if r := ask(t, addr, "dead.demo.test."); r.Rcode != dns.RcodeServerFailure {
				t.Errorf("want SERVFAIL, got %s", dns.RcodeToString[r.Rcode])
			}
		})
		t.Run("TCP from "+addr, func(t *testing.T) {
			c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
			r, _, err := c.Exchange(dnstest.Query("www.demo.test.", dns.TypeA), addr)
			if err != nil {
				t.Fatal(err)
			}
			wantA(t, r, "192.0.2.11")
		})
	}
}

// TestLabWildcardAllocs: a wildcard listener's pktinfo costs no allocation
// per query either.
func TestLabWildcardAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.2:%d", port)
	runConfig(t, addr, fmt.Sprintf("listen: [{address: \"0.0.0.0:%d\"}]\npools:\n  default:\n    backends: [{name: r1, address: %q}]\n", port, ub.Addr))
	if avg := udpAllocsPerQuery(t, addr, "www.demo.test."); avg > 0.05 {
		t.Errorf("%.2f allocations per forwarded query on a wildcard listener, want 0", avg)
	}
}

// TestLabWildcardDoQ: quic-go, given the *net.UDPConn, reads and sets
// pktinfo itself; a DoQ connection to 127.0.0.2 on a 0.0.0.0 listener works.
func TestLabWildcardDoQ(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	certFile, keyFile, pool := writeTestCert(t, t.TempDir(), "anyfront test")
	seen := addrPicker{}
	do53 := seen.free(t)
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	runConfig(t, do53, fmt.Sprintf(`listen:
  - {address: %q}
  - {address: "0.0.0.0:%d", protocol: doq, tls: {cert: %q, key: %q}}
pools:
  default:
    backends: [{name: r1, address: %q}]
`, do53, port, certFile, keyFile, ub.Addr))
	tl := &transportLab{doq: fmt.Sprintf("127.0.0.2:%d", port), pool: pool}
	r, err := tl.doqExchange(t, doqQuery("www.demo.test."))
	if err != nil {
		t.Fatalf("DoQ to 127.0.0.2 on a wildcard listener: %v", err)
	}
	wantA(t, r, "192.0.2.11")
}

func doqQuery(name string) *dns.Msg {
	m := dnstest.Query(name, dns.TypeA)
	m.Id = 0 // RFC 9250: DoQ messages carry ID 0
	return m
}
