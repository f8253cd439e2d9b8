package faultlab

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
)

// relayRTT asks one fresh name through addr and returns the round trip.
func relayRTT(t *testing.T, netw string, addr netip.AddrPort, name string) (time.Duration, error) {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: time.Second}
	q := new(dns.Msg).SetQuestion(name+"."+testlab.RandZone, dns.TypeA)
	start := time.Now()
	r, _, err := c.Exchange(q, addr.String())
	if err == nil && r.Rcode != dns.RcodeSuccess {
		err = fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])
	}
	return time.Since(start), err
}

func TestRelayDelaysAnswers(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	const delay = 100 * time.Millisecond
	r := StartRelay(t, RelayOptions{Backend: u.Addr, Delay: delay})
	for _, netw := range []string{"udp", "tcp"} {
		for i := range 10 {
			rtt, err := relayRTT(t, netw, r.Addr(), fmt.Sprintf("delay-%s-%d", netw, i))
			if err != nil {
				t.Fatalf("%s query %d: %v", netw, i, err)
			}
			if rtt < delay || rtt >= delay+50*time.Millisecond {
				t.Errorf("%s query %d took %v, want %v to %v", netw, i, rtt, delay, delay+50*time.Millisecond)
			}
		}
	}
	// Live: no delay now.
	r.Set(0, 0)
	for _, netw := range []string{"udp", "tcp"} {
		rtt, err := relayRTT(t, netw, r.Addr(), "nodelay-"+netw)
		if err != nil {
			t.Fatal(err)
		}
		if rtt >= 50*time.Millisecond {
			t.Errorf("%s query took %v after Set(0, 0), want under 50ms", netw, rtt)
		}
	}
	if fwd, dropped := r.Stats(); fwd != 22 || dropped != 0 {
		// 11 UDP queries and 11 TCP connections.
		t.Errorf("Stats() = %d forwarded, %d dropped; want 22, 0", fwd, dropped)
	}
}

func TestRelayDropsItsShare(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r := StartRelay(t, RelayOptions{Backend: u.Addr, DropPercent: 30})
	const n = 1000
	lost := blast(t, []netip.AddrPort{r.Addr()}, n, "drop30")
	fwd, dropped := r.Stats()
	t.Logf("30%%: %d of %d lost; relay forwarded %d, dropped %d", lost, n, fwd, dropped)
	// Binomial(1000, 0.3): 300 ± 14.5; 24-36% is ±4 sigma.
	if lost < n*24/100 || lost > n*36/100 {
		t.Errorf("lost %d of %d at 30%% drop, want 24-36%%", lost, n)
	}
	if dropped != uint64(lost) || fwd+dropped != n {
		t.Errorf("Stats() = %d forwarded, %d dropped; %d of %d were lost", fwd, dropped, lost, n)
	}

	// Dead, live: nothing through over UDP or TCP; then back.
	r.Set(0, 100)
	if lost := blast(t, []netip.AddrPort{r.Addr()}, 50, "dead"); lost != 50 {
		t.Errorf("lost %d of 50 with the relay dead, want all", lost)
	}
	if _, err := relayRTT(t, "tcp", r.Addr(), "dead-tcp"); err == nil {
		t.Error("a TCP query was answered with the relay dead")
	}
	r.Set(0, 0)
	if lost := blast(t, []netip.AddrPort{r.Addr()}, 200, "alive"); lost != 0 {
		t.Errorf("lost %d of 200 after Set(0, 0)", lost)
	}
	if _, err := relayRTT(t, "tcp", r.Addr(), "alive-tcp"); err != nil {
		t.Errorf("TCP after Set(0, 0): %v", err)
	}
}
