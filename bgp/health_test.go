package bgp

import (
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

func TestJudge(t *testing.T) {
	up := func(name string) *state.Backend {
		return &state.Backend{Name: name, Pool: "p", Health: state.HealthUp, Checked: true, Admin: state.AdminAuto}
	}
	down := func(name string) *state.Backend {
		b := up(name)
		b.Health = state.HealthDown
		return b
	}
	with := func(b *state.Backend, f func(*state.Backend)) *state.Backend { f(b); return b }
	tests := []struct {
		name     string
		a        config.Announce
		backends []*state.Backend
		want     poolVerdict
	}{
		{"one of two up meets min_healthy 1",
			config.Announce{Pools: []string{"p"}, MinHealthy: 1},
			[]*state.Backend{up("a"), down("b")},
			poolVerdict{Checked: true, Up: 1, Total: 2, Need: 1}},
		{"a backend without a verdict is not counted and holds back the first round",
			config.Announce{Pools: []string{"p"}, MinHealthy: 1},
			[]*state.Backend{up("a"), with(up("b"), func(b *state.Backend) { b.Checked = false })},
			poolVerdict{Checked: false, Up: 1, Total: 2, Need: 1}},
		{"drained and admin-down backends are not up",
			config.Announce{Pools: []string{"p"}, MinHealthy: 1},
			[]*state.Backend{with(up("a"), func(b *state.Backend) { b.Admin = state.AdminDrain }), with(up("b"), func(b *state.Backend) { b.Admin = state.AdminDown })},
			poolVerdict{Checked: true, Up: 0, Total: 2, Need: 1}},
		{"a backend forced up counts without a verdict",
			config.Announce{Pools: []string{"p"}, MinHealthy: 1},
			[]*state.Backend{with(down("a"), func(b *state.Backend) { b.Admin, b.Checked = state.AdminUp, false })},
			poolVerdict{Checked: true, Up: 1, Total: 1, Need: 1}},
		{"min_healthy_fraction raises the need",
			config.Announce{Pools: []string{"p"}, MinHealthy: 1, MinHealthyFraction: 0.5},
			[]*state.Backend{up("a"), down("b"), down("c")},
			poolVerdict{Checked: true, Up: 1, Total: 3, Need: 2}},
		{"a fraction that lands on an integer needs exactly that (no float error)",
			config.Announce{Pools: []string{"p"}, MinHealthy: 0, MinHealthyFraction: 0.3},
			[]*state.Backend{up("0"), up("1"), up("2"), down("3"), down("4"), down("5"), down("6"), down("7"), down("8"), down("9")},
			poolVerdict{Checked: true, Up: 3, Total: 10, Need: 3}},
		{"backends of other pools are ignored",
			config.Announce{Pools: []string{"q"}, MinHealthy: 1},
			[]*state.Backend{up("a")},
			poolVerdict{Checked: true, Up: 0, Total: 0, Need: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := judge(tt.a, tt.backends); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDebounce(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	ok := poolVerdict{Checked: true, Up: 1, Need: 1}
	bad := poolVerdict{Checked: true, Up: 0, Need: 1}
	var d debounce
	if d.observe(poolVerdict{Up: 1, Need: 1}, t0, time.Second); d.known {
		t.Fatal("an incomplete first round was taken")
	}
	d.observe(ok, t0, time.Second)
	if !d.known || !d.healthy {
		t.Fatal("the first complete verdict was not taken at once")
	}
	if due := d.observe(bad, t0, time.Second); !due.Equal(t0.Add(time.Second)) || !d.healthy {
		t.Fatalf("bad: due %v healthy %v", due, d.healthy)
	}
	d.observe(ok, t0.Add(900*time.Millisecond), time.Second) // back before the hold time
	d.observe(bad, t0.Add(950*time.Millisecond), time.Second)
	if d.observe(bad, t0.Add(1900*time.Millisecond), time.Second); !d.healthy {
		t.Fatal("the hold time did not restart after the pool recovered")
	}
	if d.observe(bad, t0.Add(1950*time.Millisecond), time.Second); d.healthy {
		t.Fatal("not unhealthy after a full hold time below minimum")
	}
}
