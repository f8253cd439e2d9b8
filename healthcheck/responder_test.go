package healthcheck

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

func testHealthCheck(qname string, qtype uint16, rcodes ...int) config.HealthCheck {
	return config.HealthCheck{
		QName: qname, QType: qtype, Interval: time.Second, Timeout: 500 * time.Millisecond,
		Rise: 2, Fall: 2, Mode: "active", Rcodes: rcodes,
		FailureRatio: 0.3, Window: 10 * time.Second, MinSamples: 10,
	}
}

// fakeResolver answers probes on loopback the way a test case says, to
// check what the Checker accepts; real resolvers only ever answer right.
type fakeResolver struct {
	conn  *net.UDPConn
	other *net.UDPConn // a second socket, to answer from the wrong port
	spoil func(q *dns.Msg, m *dns.Msg) (fromOther bool)
	wg    sync.WaitGroup
}

func startFake(t *testing.T, spoil func(q, m *dns.Msg) bool) netip.AddrPort {
	t.Helper()
	return startFakeOn(t, netip.MustParseAddr("127.0.0.1"), spoil)
}

func startFakeOn(t *testing.T, ip netip.Addr, spoil func(q, m *dns.Msg) bool) netip.AddrPort {
	t.Helper()
	lo := net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	conn, err := net.ListenUDP("udp", lo)
	if err != nil {
		if ip.Is6() {
			t.Skipf("no IPv6 loopback: %v", err)
		}
		t.Fatal(err)
	}
	other, err := net.ListenUDP("udp", lo)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeResolver{conn: conn, other: other, spoil: spoil}
	f.wg.Go(f.serve)
	t.Cleanup(func() {
		conn.Close()
		other.Close()
		f.wg.Wait()
	})
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

func (f *fakeResolver) serve() {
	buf := make([]byte, 512)
	for {
		n, from, err := f.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		q := new(dns.Msg)
		if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
			continue
		}
		m := new(dns.Msg).SetReply(q)
		rr, _ := dns.NewRR(q.Question[0].Name + " 0 IN A 192.0.2.1")
		m.Answer = []dns.RR{rr}
		conn := f.conn
		if f.spoil(q, m) {
			conn = f.other
		}
		out, err := m.Pack()
		if err != nil {
			continue
		}
		conn.WriteToUDPAddrPort(out, from)
	}
}

// TestOnlyTheRightAnswerIsAccepted: an answer counts only when it comes
// from the probed address with the probe's ID and question.
func TestOnlyTheRightAnswerIsAccepted(t *testing.T) {
	tests := []struct {
		name       string
		spoil      func(q, m *dns.Msg) bool
		want       state.Health
		last       string
		unexpected bool
	}{
		{"a right answer is accepted", func(q, m *dns.Msg) bool { return false }, state.HealthUp, "answered NOERROR", false},
		{"an answer with another ID is ignored", func(q, m *dns.Msg) bool { m.Id = q.Id + 1; return false }, state.HealthDown, "timed out", true},
		{"an answer from another port is ignored", func(q, m *dns.Msg) bool { return true }, state.HealthDown, "timed out", true},
		{"an answer for another name fails the probe", func(q, m *dns.Msg) bool { m.Question[0].Name = "other.test."; return false }, state.HealthDown, "bad answer: " + badQuestion, false},
		{"SERVFAIL fails the probe", func(q, m *dns.Msg) bool { m.Answer = nil; m.Rcode = dns.RcodeServerFailure; return false }, state.HealthDown, "rcode SERVFAIL", false},
		{"a header-only answer fails the probe", func(q, m *dns.Msg) bool { m.Answer = nil; return false }, state.HealthDown, "bad answer: " + badHeaderOnly, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFake(t, tt.spoil)
			l := newLab(t, parse(t, pool("default", ", fall: 1", labBackend{"r1", addr})))
			l.waitHealth(t, "r1", tt.want, labInterval+labTimeout+slack)
			s := l.status(t, "r1")
			if !strings.HasPrefix(s.LastResult, tt.last) {
				t.Errorf("last result = %q, want %q", s.LastResult, tt.last)
			}
			l.c.mu.Lock()
			unexpected := l.c.unexpected
			l.c.mu.Unlock()
			if (unexpected > 0) != tt.unexpected {
				t.Errorf("unexpected answers = %d, want some: %v", unexpected, tt.unexpected)
			}
		})
	}
}

func TestIPv6BackendsAreProbed(t *testing.T) {
	good := startFakeOn(t, netip.IPv6Loopback(), func(q, m *dns.Msg) bool { return false })
	bad := startFakeOn(t, netip.IPv6Loopback(), func(q, m *dns.Msg) bool { m.Answer = nil; m.Rcode = dns.RcodeRefused; return false })
	l := newLab(t, parse(t, pool("default", "fall: 1", labBackend{"good", good}, labBackend{"bad", bad})))
	l.waitHealth(t, "good", state.HealthUp, labInterval+labTimeout+slack)
	l.waitHealth(t, "bad", state.HealthDown, labInterval+labTimeout+slack)
	if r := l.row(t, "bad"); r.Reason != "rcode REFUSED" {
		t.Errorf("reason = %q, want rcode REFUSED", r.Reason)
	}
}
