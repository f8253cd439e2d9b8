package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/anyfront/anyfront/state"
)

// TestControllerOnTheProcessServer runs the real Controller, on the
// process's GoBGP server, against a receiving GoBGP on loopback: announce,
// graceful shutdown, withdraw, stop.
func TestControllerOnTheProcessServer(t *testing.T) {
	rcv := newReceiver(t)
	cfg := parseConfig(t, fmt.Sprintf(`
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
      - {name: r2, address: "127.0.0.1:5302"}
bgp:
  asn: 65001
  router_id: 198.51.100.2
  peers: [{address: 127.0.0.1, asn: 65000, port: %d}]
  withdraw_after: 200ms
  drain: {grace: 500ms}
  announce:
    - {prefix: 192.0.2.53/32, pools: [default], med: 10}
    - {prefix: "2001:db8:53::53/128", next_hop: "2001:db8:100::2", pools: [default]}
`, rcv.port))
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	store.SetServing(true)
	store.SetHealth("r1", state.HealthUp, "test")
	store.SetHealth("r2", state.HealthUp, "test")

	c, err := New(cfg.BGP, Deps{Store: store, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	r4 := route{Prefix: netip.MustParsePrefix(v4), NextHop: netip.MustParseAddr("127.0.0.1"), ASPath: []uint32{65001}, MED: 10}
	r6 := route{Prefix: netip.MustParsePrefix(v6), NextHop: netip.MustParseAddr("2001:db8:100::2"), ASPath: []uint32{65001}}
	rcv.waitRoutes(t, r4, r6)

	t.Run("a second controller in the process is refused", func(t *testing.T) {
		c2, err := New(cfg.BGP, Deps{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		if err := c2.Run(context.Background()); !errors.Is(err, ErrBusy) {
			t.Errorf("second Run: %v, want ErrBusy", err)
		}
	})

	t.Run("the status shows the session and both prefixes", func(t *testing.T) {
		eventually(t, waitTimeout, func() string {
			st := c.status()
			if len(st.Peers) != 1 || st.Peers[0].State != "established" || !st.Prefixes[0].Announced || !st.Prefixes[1].Announced {
				return fmt.Sprintf("status %+v", st)
			}
			return ""
		})
	})

	t.Run("Shutdown announces 65535:0, then withdraws before it returns", func(t *testing.T) {
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- c.Shutdown(context.Background()) }()
		d4, d6 := r4, r6
		d4.Communities = []string{GracefulShutdown}
		d6.Communities = []string{GracefulShutdown}
		rcv.waitRoutes(t, d4, d6)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 500*time.Millisecond {
			t.Errorf("Shutdown returned after %s, before the 500ms grace", d)
		}
		rcv.waitRoutes(t)
	})
}
