package faultlab

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
)

// blast sends n queries for fresh names, round robin over addrs, from one
// UDP socket at about 4,000 q/s, and returns how many got no answer within
// a second of the last one sent. Answers are matched by ID and name.
func blast(t *testing.T, addrs []netip.AddrPort, n int, tag string) int {
	t.Helper()
	conn, err := net.ListenUDP("udp4", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pending := make(map[string]bool, n)
	got := make(chan string, n)
	go func() {
		buf := make([]byte, 4096)
		for {
			k, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(got)
				return
			}
			var m dns.Msg
			if m.Unpack(buf[:k]) == nil && len(m.Question) == 1 && m.Rcode == dns.RcodeSuccess {
				got <- fmt.Sprintf("%d/%s", m.Id, m.Question[0].Name)
			}
		}
	}()
	tick := time.NewTicker(250 * time.Microsecond)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		q := new(dns.Msg).SetQuestion(fmt.Sprintf("%s-%d.%s", tag, i, testlab.RandZone), dns.TypeA)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteToUDPAddrPort(b, addrs[i%len(addrs)]); err != nil {
			t.Fatal(err)
		}
		pending[fmt.Sprintf("%d/%s", q.Id, q.Question[0].Name)] = true
	}
	deadline := time.After(time.Second)
	for len(pending) > 0 {
		select {
		case k := <-got:
			delete(pending, k)
		case <-deadline:
			return len(pending)
		}
	}
	return 0
}

func TestLossyFarmDropsItsShare(t *testing.T) {
	f := StartLossyFarm(t, LossyFarmOptions{Backends: 2, LossPercent: 5})
	if len(f.Addrs) != 2 || f.Addrs[0] == f.Addrs[1] {
		t.Fatalf("backend addresses %v, want two distinct", f.Addrs)
	}
	for _, a := range f.Addrs {
		if !netip.MustParsePrefix(farmNet).Contains(a.Addr()) {
			t.Fatalf("backend %v outside %s", a, farmNet)
		}
	}
	const n = 2000
	d0, err := f.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	lost := blast(t, f.Addrs, n, "loss5")
	d1, err := f.Dropped()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("5%%: %d of %d lost, %d dropped", lost, n, d1-d0)
	// Binomial(2000, 0.05): 100 ± 9.7; 3-7% is ±4 sigma.
	if lost < n*3/100 || lost > n*7/100 {
		t.Errorf("lost %d of %d queries at 5%% loss, want 3-7%%", lost, n)
	}
	if d1-d0 != uint64(lost) {
		t.Errorf("nft counted %d drops, %d queries were lost", d1-d0, lost)
	}
	q, err := f.Queries()
	if err != nil {
		t.Fatal(err)
	}
	// The backends saw the queries that were not dropped (plus readiness probes).
	if q < float64(n-lost) || q > float64(n-lost)+20 {
		t.Errorf("backends counted %.0f queries, want about %d", q, n-lost)
	}

	if err := f.SetLoss(0); err != nil {
		t.Fatal(err)
	}
	if f.Loss() != 0 {
		t.Errorf("Loss() = %d after SetLoss(0)", f.Loss())
	}
	if lost := blast(t, f.Addrs, n, "loss0"); lost != 0 {
		t.Errorf("lost %d of %d queries at 0%% loss", lost, n)
	}
	if d2, err := f.Dropped(); err != nil || d2 != d1 {
		t.Errorf("Dropped() = %d, %v at 0%% loss, want %d still", d2, err, d1)
	}

	if err := f.SetLoss(100); err != nil {
		t.Fatal(err)
	}
	if lost := blast(t, f.Addrs, 50, "loss100"); lost != 50 {
		t.Errorf("lost %d of 50 queries at 100%% loss, want all", lost)
	}
	if err := f.SetLoss(101); err == nil {
		t.Error("SetLoss(101) succeeded")
	}
}
