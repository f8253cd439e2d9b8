package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/anyfront/anyfront/config"
)

func mustParse(t *testing.T, yml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoBackends = `
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
      - {name: r2, address: "127.0.0.1:5302", weight: 3}
`

func TestApplyConfig(t *testing.T) {
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyConfig(mustParse(t, twoBackends)); err != nil {
		t.Fatal(err)
	}
	t.Run("new backends start up and auto", func(t *testing.T) {
		b, err := s.Backend("r2")
		if err != nil {
			t.Fatal(err)
		}
		if b.Health != HealthUp || b.Admin != AdminAuto || b.Weight != 3 || b.Pool != "default" || !b.Usable() {
			t.Errorf("got %+v", b)
		}
	})
	t.Run("a reload keeps health and admin state of unchanged backends", func(t *testing.T) {
		if _, err := s.SetHealth("r1", HealthDown, "timeout"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.SetAdmin("r2", AdminDrain); err != nil {
			t.Fatal(err)
		}
		if err := s.ApplyConfig(mustParse(t, twoBackends)); err != nil {
			t.Fatal(err)
		}
		r1, _ := s.Backend("r1")
		r2, _ := s.Backend("r2")
		if r1.Health != HealthDown || r2.Admin != AdminDrain || r1.Usable() || r2.Usable() {
			t.Errorf("state lost on reload: %+v %+v", r1, r2)
		}
	})
	t.Run("a moved backend starts afresh and a removed one is gone", func(t *testing.T) {
		err := s.ApplyConfig(mustParse(t, `
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5399"}
`))
		if err != nil {
			t.Fatal(err)
		}
		r1, _ := s.Backend("r1")
		if r1.Health != HealthUp || r1.Address != "127.0.0.1:5399" {
			t.Errorf("got %+v", r1)
		}
		if _, err := s.Backend("r2"); !errors.Is(err, ErrNotFound) {
			t.Errorf("r2: err = %v, want ErrNotFound", err)
		}
	})
}

func TestSetters(t *testing.T) {
	s, _ := New()
	if err := s.ApplyConfig(mustParse(t, twoBackends)); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		do      func() (bool, error)
		changed bool
		err     bool
	}{
		{"the first verdict is written even when it agrees", func() (bool, error) { return s.SetHealth("r1", HealthUp, "x") }, true, false},
		{"health to the same value writes nothing", func() (bool, error) { return s.SetHealth("r1", HealthUp, "x") }, false, false},
		{"health change is written", func() (bool, error) { return s.SetHealth("r1", HealthDown, "x") }, true, false},
		{"unknown backend is an error", func() (bool, error) { return s.SetAdmin("nope", AdminDrain) }, false, true},
		{"unknown admin state is an error", func() (bool, error) { return s.SetAdmin("r1", "sideways") }, false, true},
		{"admin up overrides health", func() (bool, error) { return s.SetAdmin("r1", AdminUp) }, true, false},
		{"weight below 1 is an error", func() (bool, error) { return s.SetWeight("r1", 0) }, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			changed, err := tt.do()
			if changed != tt.changed || (err != nil) != tt.err {
				t.Errorf("changed=%v err=%v", changed, err)
			}
		})
	}
	if b, _ := s.Backend("r1"); !b.Usable() {
		t.Error("admin up with health down should be usable")
	}
}

func TestWatchWakesOnChange(t *testing.T) {
	s, _ := New()
	if err := s.ApplyConfig(mustParse(t, twoBackends)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := make(chan []*Backend, 10)
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(ctx, func(_ []*Pool, bs []*Backend) { calls <- bs })
	}()
	<-calls // the initial call
	if _, err := s.SetAdmin("r1", AdminDrain); err != nil {
		t.Fatal(err)
	}
	select {
	case bs := <-calls:
		if bs[0].Name != "r1" || bs[0].Admin != AdminDrain {
			t.Errorf("watch saw %+v", bs[0])
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not wake on a change")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNodeDrain(t *testing.T) {
	s, _ := New()
	if s.Node(nil).Drained {
		t.Fatal("a new node starts drained")
	}
	ws := memdb.NewWatchSet()
	s.Node(ws)
	if changed, err := s.SetNodeDrained(true); !changed || err != nil {
		t.Fatalf("drain: changed=%v err=%v", changed, err)
	}
	if ws.Watch(time.After(time.Second)) {
		t.Error("node watch did not fire on drain")
	}
	if changed, _ := s.SetNodeDrained(true); changed {
		t.Error("draining twice reported a change")
	}
	if n := s.Node(nil); !n.Drained || n.Changed.IsZero() {
		t.Errorf("got %+v", n)
	}
}
