package proxy

import (
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

func TestSpaceSaving(t *testing.T) {
	t.Run("counts are exact while the keys fit", func(t *testing.T) {
		s := newSpaceSaving[string](8)
		for i := range 5 {
			for range i + 1 {
				s.add(fmt.Sprint("k", i), 1)
			}
		}
		m := map[string]uint64{}
		s.sumInto(m)
		for i := range 5 {
			if got := m[fmt.Sprint("k", i)]; got != uint64(i+1) {
				t.Errorf("k%d counted %d, want %d", i, got, i+1)
			}
		}
	})
	t.Run("heavy keys survive a long tail ten times the capacity", func(t *testing.T) {
		s := newSpaceSaving[string](32)
		for round := range 100 {
			for h := range 3 {
				s.add(fmt.Sprint("heavy", h), 5)
			}
			for i := range 3 {
				s.add(fmt.Sprint("tail", round*3+i), 1)
			}
		}
		m := map[string]uint64{}
		s.sumInto(m)
		if len(m) > 32 {
			t.Fatalf("%d counters kept, capacity 32", len(m))
		}
		top := topOf(m, 3, func(a, b string) int { return 0 })
		for _, e := range top {
			if e.key[:5] != "heavy" || e.count < 500 {
				t.Errorf("top entry %s=%d, want the heavy keys with at least 500", e.key, e.count)
			}
		}
	})
}

func TestTopTable(t *testing.T) {
	p := &Proxy{top: newTopTable(config.Top{Sample: 1})}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:198.51.100.2")
	www, mail := wireName("www.example."), wireName("mail.example.")
	now := time.Now()
	// Samples taken 70 s ago sit in a bucket the window has left behind.
	for range 5 {
		p.top.observe(b, mail)
	}
	p.top.drain(now.Add(-70 * time.Second))
	for range 3 {
		p.top.observe(a, www)
	}
	p.top.observe(b, mail)
	p.top.drain(now)

	got := p.Top(10)
	if !got.Enabled || got.Sample != 1 || got.WindowSeconds != 60 {
		t.Errorf("header: %+v", got)
	}
	wantClients := []TopClient{{"192.0.2.1", 3}, {"198.51.100.2", 1}}
	wantNames := []TopName{{"www.example.", 3}, {"mail.example.", 1}}
	if fmt.Sprint(got.Clients) != fmt.Sprint(wantClients) {
		t.Errorf("clients %v, want %v (mapped IPv4 shown plain, the old bucket left out)", got.Clients, wantClients)
	}
	if fmt.Sprint(got.Names) != fmt.Sprint(wantNames) {
		t.Errorf("names %v, want %v", got.Names, wantNames)
	}
	if got := p.Top(1); len(got.Clients) != 1 || len(got.Names) != 1 {
		t.Errorf("Top(1) listed %d clients and %d names", len(got.Clients), len(got.Names))
	}

	t.Run("a sampled table weighs each sample by the rate", func(t *testing.T) {
		p := &Proxy{top: newTopTable(config.Top{Sample: 4})}
		for range 4000 {
			p.top.observe(a, www)
		}
		p.top.drain(time.Now())
		got := p.Top(1)
		if q := got.Names[0].Queries; q < 3000 || q > 5000 || q%4 != 0 {
			t.Errorf("estimated %d queries for 4000 at 1 in 4", q)
		}
	})
	t.Run("off lists nothing and costs nothing", func(t *testing.T) {
		p := &Proxy{top: newTopTable(config.Top{Sample: 0})}
		if got := p.Top(10); got.Enabled || len(got.Clients) != 0 {
			t.Errorf("off: %+v", got)
		}
		if n := testing.AllocsPerRun(1000, func() { p.top.observe(a, www) }); n != 0 {
			t.Errorf("%.1f allocations per query with top off", n)
		}
	})
	t.Run("counting a query allocates nothing", func(t *testing.T) {
		tt := newTopTable(config.Top{Sample: 1})
		n := testing.AllocsPerRun(1000, func() {
			tt.observe(a, www)
			tt.q.next()
			tt.q.release()
		})
		if n != 0 {
			t.Errorf("%.1f allocations per counted query", n)
		}
	})
}

// BenchmarkTopObserve is the query path's cost of the top tables: a random
// number per query, and a queue write for the sampled ones (the consumer
// is left out: it runs on its own goroutine).
func BenchmarkTopObserve(b *testing.B) {
	a, www := netip.MustParseAddr("192.0.2.1"), wireName("www.example.")
	for _, n := range []int{8, 1} {
		b.Run(fmt.Sprintf("sample=%d", n), func(b *testing.B) {
			tt := newTopTable(config.Top{Sample: n})
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				tt.observe(a, www)
				if i%1024 == 0 {
					for s := tt.q.next(); s != nil; s = tt.q.next() {
						tt.q.release()
					}
				}
			}
		})
	}
}

func TestTopSampleFollowsReload(t *testing.T) {
	load := func(yml string) *config.Config {
		cfg, err := config.Parse("t.yaml", []byte(yml+"pools: {default: {backends: [{name: r1, address: \"127.0.0.1:5301\"}]}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(load(""), Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Top(1); !got.Enabled || got.Sample != 8 {
		t.Fatalf("default: %+v", got)
	}
	p.Reload(load("top: {sample: 2}\n"))
	if got := p.Top(1); !got.Enabled || got.Sample != 2 {
		t.Errorf("after a reload to 2: %+v", got)
	}
	p.Reload(load("top: {sample: 0}\n"))
	if got := p.Top(1); got.Enabled {
		t.Errorf("after a reload to 0: %+v", got)
	}
}
