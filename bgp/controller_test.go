package bgp

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/state"
)

// baseConfig has one pool of two backends behind an IPv4 and an IPv6
// prefix; %s places extra keys in the bgp section.
const baseConfig = `
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
      - {name: r2, address: "127.0.0.1:5302"}
      - {name: r3, address: "127.0.0.1:5303"}
bgp:
  asn: 65001
  router_id: 198.51.100.2
  peers: [{address: 198.51.100.1, asn: 65000}]
  withdraw_after: 2s
  drain: {grace: 10s, prepend: 2, med: 500, community: "65001:666"}
  announce:
    - prefix: 192.0.2.53/32
      pools: [default]
      min_healthy: 1
      communities: ["65001:53", "65001:1:2"]
      med: 10
    - prefix: 2001:db8:53::53/128
      next_hop: "2001:db8:100::2"
      pools: [default]
      min_healthy: 2
`

const (
	v4 = "192.0.2.53/32"
	v6 = "2001:db8:53::53/128"
)

func TestAnnounceRules(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"nothing is announced before every backend has a health verdict", func(t *testing.T, h *harness) {
			h.health("r1", true)
			h.health("r2", true)
			h.wantAnnounced(v4, false)
			if r := h.reason(v4); !strings.Contains(r, "waiting for the first health check") {
				t.Errorf("reason %q", r)
			}
			h.health("r3", false) // a down verdict completes the first round too
			h.wantAnnounced(v4, true)
			h.wantAnnounced(v6, true)
		}},
		{"with no session up the log says the speaker has the prefix, not that it is announced", func(t *testing.T, h *harness) {
			h.session().peer("198.51.100.1", "active")
			h.sync()
			h.allHealthy("r1", "r2", "r3")
			h.wantAnnounced(v4, true) // in the speaker's RIB
			logs := h.logs.String()
			if strings.Contains(logs, "bgp prefix announced") || !strings.Contains(logs, "bgp prefix advertised to the speaker") {
				t.Errorf("log claims more than is true (no established session):\n%s", logs)
			}
		}},
		{"the first verdict is acted on at once, later ones after withdraw_after", func(t *testing.T, h *harness) {
			h.health("r1", true)
			h.health("r2", false)
			h.health("r3", false)
			h.wantAnnounced(v4, true)
			h.wantAnnounced(v6, false) // min_healthy 2
			if r := h.reason(v6); !strings.Contains(r, "pool below minimum: 1 of 3 backends up, need 2") {
				t.Errorf("reason %q", r)
			}
			h.health("r2", true)
			h.advance(2*time.Second - time.Millisecond)
			h.wantAnnounced(v6, false)
			h.advance(time.Millisecond)
			h.wantAnnounced(v6, true)
		}},
		{"withdraws only after the pool stayed below minimum for withdraw_after", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			h.health("r1", false)
			h.health("r2", false)
			h.health("r3", false)
			h.advance(1999 * time.Millisecond)
			h.wantAnnounced(v4, true)
			if r := h.reason(v4); !strings.Contains(r, "withdrawing after withdraw_after") {
				t.Errorf("reason %q", r)
			}
			h.advance(time.Millisecond)
			h.wantAnnounced(v4, false)
			h.wantAnnounced(v6, false)
		}},
		{"a flapping backend with a healthy sibling never moves the route", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			for i := range 50 {
				h.health("r1", i%2 == 1)
				h.advance(300 * time.Millisecond)
			}
			if n := h.session().changesOf(v4); n != 1 {
				t.Errorf("%s changed %d times, want only the first announce", v4, n)
			}
			if n := h.session().changesOf(v6); n != 1 {
				t.Errorf("%s changed %d times, want only the first announce", v6, n)
			}
		}},
		{"a pool below minimum for less than withdraw_after keeps the route", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			for range 5 {
				h.health("r1", false)
				h.health("r2", false)
				h.health("r3", false)
				h.advance(1900 * time.Millisecond)
				h.health("r3", true)
				h.advance(time.Second)
			}
			if n := h.session().changesOf(v4); n != 1 {
				t.Errorf("%s changed %d times, want only the first announce", v4, n)
			}
		}},
		{"drained and admin-down backends do not count as up", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			for _, b := range []string{"r1", "r2"} {
				if _, err := h.store.SetAdmin(b, state.AdminDrain); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := h.store.SetAdmin("r3", state.AdminDown); err != nil {
				t.Fatal(err)
			}
			h.sync()
			h.advance(2 * time.Second)
			h.wantAnnounced(v4, false)
			if _, err := h.store.SetAdmin("r3", state.AdminUp); err != nil {
				t.Fatal(err)
			}
			h.sync()
			h.advance(2 * time.Second)
			h.wantAnnounced(v4, true)
		}},
		{"nothing is announced while the node is not serving, and at once when it is", func(t *testing.T, h *harness) {
			if _, err := h.store.SetServing(false); err != nil {
				t.Fatal(err)
			}
			h.allHealthy("r1", "r2", "r3")
			h.wantAnnounced(v4, false)
			if r := h.reason(v4); !strings.Contains(r, "not serving") {
				t.Errorf("reason %q", r)
			}
			if _, err := h.store.SetServing(true); err != nil {
				t.Fatal(err)
			}
			h.sync()
			h.wantAnnounced(v4, true)
			if _, err := h.store.SetServing(false); err != nil {
				t.Fatal(err)
			}
			h.sync()
			h.wantAnnounced(v4, false) // no hysteresis: nothing would answer
		}},
		{"attributes come from the config", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			p := h.wantAnnounced(v4, true)
			want := Path{Prefix: p.Prefix, Communities: []string{"65001:53", "65001:1:2"}, MED: 10}
			if !p.Equal(want) {
				t.Errorf("got %s, want %s", p, want)
			}
			p6 := h.wantAnnounced(v6, true)
			if p6.NextHop.String() != "2001:db8:100::2" {
				t.Errorf("v6 next hop %s", p6.NextHop)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newHarness(t, baseConfig))
		})
	}
}

func TestDrain(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"a node drained before its first announcement (state file) never announces until undrained", func(t *testing.T, h *harness) {
			if _, err := h.store.SetNodeDrained(true); err != nil {
				t.Fatal(err)
			}
			h.sync()
			h.allHealthy("r1", "r2", "r3")
			h.wantAnnounced(v4, false)
			h.advance(time.Minute)
			h.wantAnnounced(v4, false)
			h.wantAnnounced(v6, false)
			if strings.Contains(h.logs.String(), "prefix=192.0.2.53/32") {
				t.Errorf("a drained node logged about its prefix:\n%s", h.logs.String())
			}
			if n := h.session().changesOf(v4) + h.session().changesOf(v6); n != 0 {
				t.Fatalf("a drained node changed the announced set %d times", n)
			}
			if _, err := h.store.SetNodeDrained(false); err != nil {
				t.Fatal(err)
			}
			h.sync()
			h.wantAnnounced(v4, true)
		}},
		{"node drain re-announces with 65535:0 and the extras, withdraws after grace; undrain re-announces plainly", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			plain := h.wantAnnounced(v4, true)
			if _, err := h.store.SetNodeDrained(true); err != nil {
				t.Fatal(err)
			}
			h.sync()
			p := h.wantAnnounced(v4, true)
			if !p.HasCommunity(GracefulShutdown) || !p.HasCommunity("65001:666") || !p.HasCommunity("65001:53") {
				t.Errorf("draining path %s lacks a community", p)
			}
			if p.Prepend != 2 || p.MED != 500 {
				t.Errorf("draining path %s: want prepend 2, med 500", p)
			}
			h.advance(10*time.Second - time.Millisecond)
			h.wantAnnounced(v4, true)
			h.advance(time.Millisecond)
			h.wantAnnounced(v4, false)
			h.wantAnnounced(v6, false)
			if r := h.reason(v4); r != "drained" {
				t.Errorf("reason %q", r)
			}
			if _, err := h.store.SetNodeDrained(false); err != nil {
				t.Fatal(err)
			}
			h.sync()
			if p := h.wantAnnounced(v4, true); !p.Equal(plain) {
				t.Errorf("after undrain got %s, want %s", p, plain)
			}
		}},
		{"undrain during the grace re-announces plainly at once", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			plain := h.wantAnnounced(v4, true)
			h.store.SetNodeDrained(true)
			h.advance(time.Second)
			h.store.SetNodeDrained(false)
			h.sync()
			if p := h.wantAnnounced(v4, true); !p.Equal(plain) {
				t.Errorf("got %s, want %s", p, plain)
			}
		}},
		{"a draining node announces no prefix that was not announced", func(t *testing.T, h *harness) {
			h.health("r1", true)
			h.health("r2", false)
			h.health("r3", false)
			h.wantAnnounced(v6, false)
			h.store.SetNodeDrained(true)
			h.sync()
			h.health("r2", true)
			h.advance(3 * time.Second)
			h.wantAnnounced(v6, false)
		}},
		{"drain with no established session withdraws at once", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			h.session().peer("198.51.100.1", "active")
			h.sync()
			h.store.SetNodeDrained(true)
			h.sync()
			h.wantAnnounced(v4, false)
		}},
		{"Shutdown drains for the grace, withdraws, then returns", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			done := make(chan error, 1)
			go func() { done <- h.c.Shutdown(context.Background()) }()
			eventually(t, waitTimeout, func() string {
				if p, _ := h.session().announced(v4); !p.HasCommunity(GracefulShutdown) {
					return "not re-announced with 65535:0: " + p.String()
				}
				return ""
			})
			h.sync()
			if r := h.reason(v4); !strings.Contains(r, "draining") {
				t.Errorf("reason %q", r)
			}
			select {
			case <-done:
				t.Fatal("Shutdown returned before the grace")
			default:
			}
			h.advance(10 * time.Second)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			h.wantAnnounced(v4, false)
			h.wantAnnounced(v6, false)
			if r := h.reason(v4); r != "shutting down" {
				t.Errorf("reason %q", r)
			}
			h.store.SetNodeDrained(false) // an undrain does not undo a shutdown
			h.sync()
			h.wantAnnounced(v4, false)
		}},
		{"Shutdown whose context ends cuts the grace short", func(t *testing.T, h *harness) {
			h.allHealthy("r1", "r2", "r3")
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- h.c.Shutdown(ctx) }()
			eventually(t, waitTimeout, func() string {
				if p, _ := h.session().announced(v4); !p.HasCommunity(GracefulShutdown) {
					return "not re-announced with 65535:0"
				}
				return ""
			})
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			h.wantAnnounced(v4, false)
		}},
		{"Shutdown with nothing announced returns at once", func(t *testing.T, h *harness) {
			if err := h.c.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, newHarness(t, baseConfig))
		})
	}
}
