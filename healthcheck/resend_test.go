package healthcheck

import (
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/state"
)

// startDropFirst runs a resolver that ignores the first datagram of every
// query ID and answers the second: the worst a lossy path does to a probe.
func startDropFirst(t *testing.T) netip.AddrPort {
	t.Helper()
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		seen := map[uint16]int{}
		buf := make([]byte, 512)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			if seen[q.Id]++; seen[q.Id] == 1 {
				continue
			}
			m := new(dns.Msg).SetReply(q)
			rr, _ := dns.NewRR(q.Question[0].Name + " 0 IN A 192.0.2.1")
			m.Answer = []dns.RR{rr}
			if out, err := m.Pack(); err == nil {
				conn.WriteToUDPAddrPort(out, from)
			}
		}
	})
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return conn.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestALostProbeDatagramIsSentAgain: a UDP probe goes a second time half its
// timeout in, so one lost datagram is not a failed check (with 5% loss and
// fall 2, single sends marked a healthy backend down about once in 400
// checks).
func TestALostProbeDatagramIsSentAgain(t *testing.T) {
	addr := startDropFirst(t)
	l := newLab(t, parse(t, pool("default", "", labBackend{"r1", addr})))
	l.waitHealth(t, "r1", state.HealthUp, labInterval+labTimeout+slack)
	if r := l.row(t, "r1"); r.Reason != "1 probe answered" {
		t.Errorf("reason = %q, want %q", r.Reason, "1 probe answered")
	}
}
