package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/birdlab"
	"github.com/anyfront/anyfront/state"
)

// The end-to-end lab: BIRD in its own namespace, the controller in the
// test process on the root namespace's end of a veth.
var (
	birdAddr4 = netip.MustParsePrefix("198.51.100.1/24")
	ourAddr4  = netip.MustParsePrefix("198.51.100.2/24")
	birdAddr6 = netip.MustParsePrefix("2001:db8:100::1/64")
	ourAddr6  = netip.MustParsePrefix("2001:db8:100::2/64")
)

func e2eBird() birdlab.Options {
	return birdlab.Options{
		RouterID:  birdAddr4.Addr(),
		ASN:       65000,
		Neighbors: []birdlab.Neighbor{{Name: "anyfront", Address: ourAddr4.Addr(), ASN: 65001}},
	}
}

const e2eConfig = `
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
      - {name: r2, address: "127.0.0.1:5302"}
bgp:
  asn: 65001
  router_id: 198.51.100.2
  peers: [{address: 198.51.100.1, asn: 65000, hold_time: 9s}]
  withdraw_after: 1s
  drain: {grace: 2s}
  announce:
    - {prefix: 192.0.2.53/32, pools: [default], min_healthy: 1}
    - {prefix: "2001:db8:53::53/128", next_hop: "2001:db8:100::2", pools: [default], min_healthy: 1}
`

// TestBirdConfigGolden pins the generated router config; refresh with
// go test ./bgp -run BirdConfigGolden -update.
func TestBirdConfigGolden(t *testing.T) {
	got, err := birdlab.Config(e2eBird())
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "bird-e2e.conf")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	if got != string(want) {
		t.Errorf("bird config differs from %s (refresh with -update if intended):\n%s", golden, got)
	}
}

// birdLab is the running end-to-end lab.
type birdLab struct {
	t     *testing.T
	bird  *birdlab.Bird
	store *state.Store
	c     *Controller
}

// routes returns BIRD's best route per prefix.
func (l *birdLab) routes() map[string]birdlab.Route {
	l.t.Helper()
	rs, err := l.bird.Routes()
	if err != nil {
		l.t.Fatal(err)
	}
	out := map[string]birdlab.Route{}
	for _, r := range rs {
		if r.Primary {
			out[r.Prefix.String()] = r
		}
	}
	return out
}

// waitFor polls BIRD until cond holds for its routes and returns how long
// that took.
func (l *birdLab) waitFor(what string, timeout time.Duration, cond func(map[string]birdlab.Route) bool) time.Duration {
	l.t.Helper()
	start := time.Now()
	var last map[string]birdlab.Route
	for time.Since(start) < timeout {
		if last = l.routes(); cond(last) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	l.t.Fatalf("%s: not within %s; BIRD has %v; status %+v", what, timeout, last, l.c.status())
	return 0
}

// importStats is what BIRD has received from us so far.
func (l *birdLab) importStats() (updates, withdraws uint64) {
	l.t.Helper()
	u, w, err := l.bird.ImportStats("anyfront")
	if err != nil {
		l.t.Fatal(err)
	}
	return u, w
}

func (l *birdLab) setHealth(up bool, names ...string) {
	h := state.HealthDown
	if up {
		h = state.HealthUp
	}
	for _, n := range names {
		if _, err := l.store.SetHealth(n, h, "test"); err != nil {
			l.t.Fatal(err)
		}
	}
}

func both(present bool, extra func(birdlab.Route) bool) func(map[string]birdlab.Route) bool {
	return func(rs map[string]birdlab.Route) bool {
		for _, p := range []string{v4, v6} {
			r, ok := rs[p]
			if ok != present || ok && extra != nil && !extra(r) {
				return false
			}
		}
		return true
	}
}

// TestEndToEndWithBIRD checks the announce rules as a real router sees
// them. Root only: it creates a namespace and a veth.
func TestEndToEndWithBIRD(t *testing.T) {
	testlab.RequireRoot(t)
	for _, b := range []string{"bird", "birdc", "ip"} {
		testlab.RequireBinary(t, b)
	}
	ns := testlab.NewNetns(t, "rtr")
	testlab.NewVeth(t, "v", nil, []netip.Prefix{ourAddr4, ourAddr6}, ns, []netip.Prefix{birdAddr4, birdAddr6})
	l := &birdLab{t: t, bird: birdlab.Start(t, ns, e2eBird())}

	cfg := parseConfig(t, e2eConfig)
	var err error
	if l.store, err = state.New(); err != nil {
		t.Fatal(err)
	}
	if err := l.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	l.store.SetServing(true)
	l.setHealth(true, "r1", "r2")
	if l.c, err = New(cfg.BGP, Deps{Store: l.store, Log: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- l.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	withdrawBound := cfg.BGP.WithdrawAfter + time.Second
	plain := func(r birdlab.Route) bool { return !r.HasCommunity(GracefulShutdown) }

	t.Run("both prefixes arrive with their next hops", func(t *testing.T) {
		l.waitFor("routes announced", waitTimeout, both(true, plain))
		rs := l.routes()
		if r := rs[v4]; len(r.NextHops) != 1 || r.NextHops[0] != ourAddr4.Addr() || len(r.ASPath) != 1 || r.ASPath[0] != 65001 {
			t.Errorf("v4 route %s", r)
		}
		if r := rs[v6]; len(r.NextHops) != 1 || r.NextHops[0] != ourAddr6.Addr() {
			t.Errorf("v6 route %s", r)
		}
	})
	t.Run("all backends down: withdrawn within withdraw_after + 1s", func(t *testing.T) {
		l.setHealth(false, "r1", "r2")
		took := l.waitFor("withdrawn", waitTimeout, both(false, nil))
		if took > withdrawBound || took < cfg.BGP.WithdrawAfter-100*time.Millisecond {
			t.Errorf("withdrawn after %s, want between withdraw_after (%s) and %s", took, cfg.BGP.WithdrawAfter, withdrawBound)
		}
	})
	t.Run("recovered: announced again", func(t *testing.T) {
		l.setHealth(true, "r1", "r2")
		if took := l.waitFor("re-announced", waitTimeout, both(true, plain)); took > withdrawBound {
			t.Errorf("re-announced after %s, want within %s", took, withdrawBound)
		}
	})
	t.Run("a flapping backend with a healthy sibling does not move the route", func(t *testing.T) {
		updates, withdraws := l.importStats()
		for i := range 15 {
			l.setHealth(i%2 == 1, "r1")
			time.Sleep(200 * time.Millisecond) // the flapping itself, not a wait for a condition
			if !both(true, plain)(l.routes()) {
				t.Fatalf("a route went away while r2 stayed up: %v", l.routes())
			}
		}
		if u, w := l.importStats(); u != updates || w != withdraws {
			t.Errorf("BIRD received %d updates and %d withdrawals during the flapping, want none", u-updates, w-withdraws)
		}
		l.setHealth(true, "r1")
	})
	t.Run("node drain: 65535:0, then withdrawn after grace; undrain: back without it", func(t *testing.T) {
		start := time.Now()
		l.store.SetNodeDrained(true)
		l.waitFor("re-announced with 65535:0", waitTimeout, both(true, func(r birdlab.Route) bool { return r.HasCommunity(GracefulShutdown) }))
		l.waitFor("withdrawn after grace", cfg.BGP.Drain.Grace+waitTimeout, both(false, nil))
		if d := time.Since(start); d < cfg.BGP.Drain.Grace {
			t.Errorf("withdrawn %s after the drain, before the %s grace", d, cfg.BGP.Drain.Grace)
		}
		l.store.SetNodeDrained(false)
		l.waitFor("announced plainly after undrain", waitTimeout, both(true, plain))
	})
	t.Run("Shutdown: 65535:0, withdrawn before it returns", func(t *testing.T) {
		done := make(chan error, 1)
		sctx, scancel := context.WithTimeout(context.Background(), waitTimeout)
		defer scancel()
		go func() { done <- l.c.Shutdown(sctx) }()
		l.waitFor("re-announced with 65535:0", waitTimeout, both(true, func(r birdlab.Route) bool { return r.HasCommunity(GracefulShutdown) }))
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// BIRD processes the withdraw a moment after GoBGP sends it.
		l.waitFor("withdrawn", time.Second, both(false, nil))
	})
	if t.Failed() {
		out, _ := l.bird.Birdc("show", "protocols", "all", "anyfront")
		fmt.Fprintln(os.Stderr, strings.TrimSpace(out))
	}
}
