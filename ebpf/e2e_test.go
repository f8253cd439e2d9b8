package ebpf

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
)

// Lab clients, each its own rate-limit prefix (v4_prefix 32, v6_prefix 128).
var (
	flooder   = netip.MustParseAddr("198.51.100.10")
	steady    = netip.MustParseAddr("198.51.100.20")
	listed    = netip.MustParseAddr("198.51.100.30") // in the blocklist
	dynamic   = netip.MustParseAddr("198.51.100.40") // blocked with Block
	steady6   = netip.MustParseAddr("2001:db8:100::20")
	listed6   = netip.MustParseAddr("2001:db8:100::30")
	labBudget = config.RateLimit{QPS: 100, Burst: 20, V4Prefix: 32, V6Prefix: 128, TCSlip: 4}
)

// startLab builds the namespaces, the responder and a running Dataplane
// attached to the server's veth in mode; Run is stopped at cleanup if the
// test has not stopped it.
func startLab(t *testing.T, mode string) (*testlab.XDPLab, *responder, *Dataplane, func() error) {
	lab := testlab.NewXDPLab(t, flooder, steady, listed, dynamic, steady6, listed6)
	r := startResponder(t, lab)
	if mode == "driver" {
		attachPass(t, lab)
	}
	cfg := &config.XDP{
		Interface: lab.ServerIf, Mode: mode,
		VIPs:      []netip.AddrPort{netip.AddrPortFrom(lab.VIP4, 53), netip.AddrPortFrom(lab.VIP6, 53)},
		RateLimit: labBudget,
		Blocklist: []netip.Prefix{netip.PrefixFrom(listed, 32), netip.PrefixFrom(listed6, 128)},
	}
	d, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	lab.Go(lab.Server, func(err error) {
		if err == nil {
			err = d.Run(ctx)
		}
		errc <- err
	})
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			runErr = <-errc
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	want := map[string]string{"generic": "xdpgeneric", "driver": "xdp"}[mode]
	eventually(t, "attached in "+mode+" mode", 5*time.Second, func() bool {
		select {
		case err := <-errc:
			t.Fatalf("Run: %v", err)
		default:
		}
		return xdpState(t, lab) == want
	})
	t.Logf("attached:\n%s", lab.LinkDetails(t, lab.Server, lab.ServerIf))
	return lab, r, d, stop
}

func TestEndToEnd(t *testing.T) {
	for _, mode := range []string{"generic", "driver"} {
		t.Run(mode, func(t *testing.T) {
			lab, r, d, stop := startLab(t, mode)
			t.Run("clients are served over IPv4 and IPv6", func(t *testing.T) {
				for _, a := range []netip.Addr{steady, steady6} {
					vip := lab.VIP4
					if a.Is6() {
						vip = lab.VIP6
					}
					if got := newLabClient(t, lab, a).ask(t, vip, 5, time.Second); got != 5 {
						t.Errorf("%v: %d of 5 queries answered", a, got)
					}
				}
			})
			t.Run("blocklisted sources get no answer and are counted", func(t *testing.T) {
				before, _ := d.Counters()
				for _, a := range []netip.Addr{listed, listed6} {
					vip := lab.VIP4
					if a.Is6() {
						vip = lab.VIP6
					}
					c := newLabClient(t, lab, a)
					for range 5 {
						c.send(t, vip, false)
					}
					if full, tc := c.collect(t, 300*time.Millisecond); full+tc != 0 || r.received(a) != 0 {
						t.Errorf("%v: %d answers; the responder saw %d queries", a, full+tc, r.received(a))
					}
				}
				eventually(t, "10 packets counted blocked", time.Second, func() bool {
					now, _ := d.Counters()
					return now.Blocked-before.Blocked == 10
				})
			})
			t.Run("responses aimed at the VIP are malformed", func(t *testing.T) {
				before, _ := d.Counters()
				c := newLabClient(t, lab, steady)
				seen := r.received(steady)
				for range 3 {
					c.send(t, lab.VIP4, true)
				}
				eventually(t, "3 packets counted malformed", time.Second, func() bool {
					now, _ := d.Counters()
					return now.Malformed-before.Malformed == 3
				})
				if got := r.received(steady) - seen; got != 0 {
					t.Errorf("the responder got %d of them", got)
				}
			})
			t.Run("a flood gets its budget and another client is fully served", func(t *testing.T) {
				testFlood(t, lab, d)
			})
			t.Run("a dynamic block holds, then expires by itself", func(t *testing.T) {
				c := newLabClient(t, lab, dynamic)
				if err := d.Block(netip.PrefixFrom(dynamic, 32), time.Now().Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				if got := c.ask(t, lab.VIP4, 2, 200*time.Millisecond); got != 0 {
					t.Errorf("%d answers while blocked", got)
				}
				eventually(t, "answered after the block ended", 3*time.Second, func() bool {
					return c.ask(t, lab.VIP4, 1, 100*time.Millisecond) == 1
				})
			})
			t.Run("an operator's unblock lifts a dynamic block at once", func(t *testing.T) {
				c := newLabClient(t, lab, dynamic)
				if err := d.Block(netip.PrefixFrom(dynamic, 32), time.Now().Add(time.Hour)); err != nil {
					t.Fatal(err)
				}
				if got := c.ask(t, lab.VIP4, 1, 200*time.Millisecond); got != 0 {
					t.Errorf("%d answers while blocked", got)
				}
				if err := d.Unblock(netip.PrefixFrom(dynamic, 32)); err != nil {
					t.Fatal(err)
				}
				if got := c.ask(t, lab.VIP4, 2, time.Second); got != 2 {
					t.Errorf("after unblock: %d of 2 answered", got)
				}
			})
			t.Run("a reload changes the blocklist live", func(t *testing.T) {
				cfg := *d.cfg
				cfg.Blocklist = []netip.Prefix{netip.PrefixFrom(steady6, 128)}
				if err := d.Reload(&cfg); err != nil {
					t.Fatal(err)
				}
				if got := newLabClient(t, lab, steady6).ask(t, lab.VIP6, 2, 200*time.Millisecond); got != 0 {
					t.Errorf("newly blocked source: %d answers", got)
				}
				if got := newLabClient(t, lab, listed).ask(t, lab.VIP4, 2, time.Second); got != 2 {
					t.Errorf("unblocked source: %d of 2 answered", got)
				}
			})
			if err := stop(); err != nil {
				t.Fatalf("Run: %v", err)
			}
			if s := xdpState(t, lab); s != "" {
				t.Errorf("still attached (%s) after Run returned", s)
			}
		})
	}
}

// testFlood has one source send 20 times its budget for a while and
// another a steady trickle under its own: the flood gets about its budget
// (the burst plus qps per second) and a share of TC answers, and the
// trickle gets every answer.
func testFlood(t *testing.T, lab *testlab.XDPLab, d *Dataplane) {
	const (
		length   = 2 * time.Second
		tick     = 10 * time.Millisecond
		floodQPS = 20 * 100 // 20x labBudget.QPS
		calmQPS  = 40
	)
	before, _ := d.Counters()
	flood, calm := newLabClient(t, lab, flooder), newLabClient(t, lab, steady)
	var floodFull, floodTC, calmFull, calmTC int
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); floodFull, floodTC = flood.collect(t, time.Second) }()
	go func() { defer wg.Done(); calmFull, calmTC = calm.collect(t, time.Second) }()

	start := time.Now()
	sentFlood, sentCalm := 0, 0
	for next := start; time.Since(start) < length; next = next.Add(tick) {
		time.Sleep(time.Until(next))
		// Catch up to where both senders should be by now.
		el := time.Since(start).Seconds()
		for ; sentFlood < int(el*floodQPS); sentFlood++ {
			flood.send(t, lab.VIP4, false)
		}
		for ; sentCalm < int(el*calmQPS); sentCalm++ {
			calm.send(t, lab.VIP4, false)
		}
	}
	took := time.Since(start)
	wg.Wait()
	after, _ := d.Counters()

	budget := float64(labBudget.Burst) + took.Seconds()*float64(labBudget.QPS)
	t.Logf("flood: sent %d in %v, %d answered (budget %.0f), %d TC; steady: sent %d, %d answered; counters %+v",
		sentFlood, took.Round(time.Millisecond), floodFull, budget, floodTC, sentCalm, calmFull, after)
	if f := float64(floodFull); f < 0.8*budget || f > 1.2*budget {
		t.Errorf("the flood got %d answers, not about its budget of %.0f", floodFull, budget)
	}
	if calmFull != sentCalm || calmTC != 0 {
		t.Errorf("the steady client got %d full and %d TC answers to %d queries", calmFull, calmTC, sentCalm)
	}
	over := sentFlood - floodFull
	truncated, limited := int(after.Truncated-before.Truncated), int(after.RateLimited-before.RateLimited)
	if truncated+limited != over || floodTC != truncated || after.Answered != before.Answered {
		t.Errorf("%d over the limit: counted %d truncated + %d ratelimited (and %d answered); the flooder got %d TC answers",
			over, truncated, limited, after.Answered-before.Answered, floodTC)
	}
	if want := over / int(labBudget.TCSlip); truncated < want-1 || truncated > want+1 {
		t.Errorf("%d TC answers to %d over-limit queries with tc_slip %d", truncated, over, labBudget.TCSlip)
	}
}

func TestReloadSwitchesMode(t *testing.T) {
	lab, _, d, stop := startLab(t, "generic")
	cfg := *d.cfg
	cfg.Mode = "driver"
	attachPass(t, lab)
	if err := d.Reload(&cfg); err != nil {
		t.Fatal(err)
	}
	if s := xdpState(t, lab); s != "xdp" {
		t.Errorf("after the reload to driver mode: %q", s)
	}
	if got := newLabClient(t, lab, steady).ask(t, lab.VIP4, 3, time.Second); got != 3 {
		t.Errorf("%d of 3 answered after the switch", got)
	}
	bad := cfg
	bad.Interface = "nonexistent0"
	if err := d.Reload(&bad); err == nil {
		t.Error("a reload to a missing interface succeeded")
	}
	if s := xdpState(t, lab); s != "xdp" {
		t.Errorf("after a failed reload the old attachment should stay: %q", s)
	}
	if got := attachedMetric(t, d); got != lab.ServerIf+"/driver" {
		t.Errorf("anyfront_xdp_attached for %q, want %s/driver", got, lab.ServerIf)
	}

	// Another interface: the new attachment comes first, then the old goes.
	// The server's own loopback is as good as any, in generic mode.
	moved := cfg
	moved.Interface, moved.Mode = "lo", "generic"
	if err := d.Reload(&moved); err != nil {
		t.Fatal(err)
	}
	if s := xdpState(t, lab); s != "" {
		t.Errorf("the veth kept its program (%s) after the move to lo", s)
	}
	if got := attachedMetric(t, d); got != "lo/generic" {
		t.Errorf("anyfront_xdp_attached for %q, want lo/generic", got)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if out := lab.LinkDetails(t, lab.Server, "lo"); strings.Contains(out, "prog/xdp") {
		t.Errorf("still attached to lo after Run returned:\n%s", out)
	}
	if got := attachedMetric(t, d); got != "" {
		t.Errorf("anyfront_xdp_attached for %q after Run returned", got)
	}
}
