package top

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
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

func TestTable(t *testing.T) {
	p := New(config.Top{Sample: 1})
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("::ffff:198.51.100.2")
	www, mail := wireName("www.example."), wireName("mail.example.")
	now := time.Now()
	// Samples taken 70 s ago sit in a bucket the window has left behind.
	for range 5 {
		p.Observe(b, mail)
	}
	p.drain(now.Add(-70 * time.Second))
	for range 3 {
		p.Observe(a, www)
	}
	p.Observe(b, mail)
	p.drain(now)

	got := p.List(10)
	if !got.Enabled || got.Sample != 1 || got.WindowSeconds != 60 {
		t.Errorf("header: %+v", got)
	}
	wantClients := []Client{{"192.0.2.1", 3}, {"198.51.100.2", 1}}
	wantNames := []Name{{"www.example.", 3}, {"mail.example.", 1}}
	if fmt.Sprint(got.Clients) != fmt.Sprint(wantClients) {
		t.Errorf("clients %v, want %v (mapped IPv4 shown plain, the old bucket left out)", got.Clients, wantClients)
	}
	if fmt.Sprint(got.Names) != fmt.Sprint(wantNames) {
		t.Errorf("names %v, want %v", got.Names, wantNames)
	}
	if got := p.List(1); len(got.Clients) != 1 || len(got.Names) != 1 {
		t.Errorf("Top(1) listed %d clients and %d names", len(got.Clients), len(got.Names))
	}

	t.Run("a sampled table weighs each sample by the rate", func(t *testing.T) {
		p := New(config.Top{Sample: 4})
		for range 4000 {
			p.Observe(a, www)
		}
		p.drain(time.Now())
		got := p.List(1)
		if q := got.Names[0].Queries; q < 3000 || q > 5000 || q%4 != 0 {
			t.Errorf("estimated %d queries for 4000 at 1 in 4", q)
		}
	})
	t.Run("off lists nothing and costs nothing", func(t *testing.T) {
		p := New(config.Top{Sample: 0})
		if got := p.List(10); got.Enabled || len(got.Clients) != 0 {
			t.Errorf("off: %+v", got)
		}
		if n := testing.AllocsPerRun(1000, func() { p.Observe(a, www) }); n != 0 {
			t.Errorf("%.1f allocations per query with top off", n)
		}
	})
	t.Run("counting a query allocates nothing", func(t *testing.T) {
		tt := New(config.Top{Sample: 1})
		n := testing.AllocsPerRun(1000, func() {
			tt.Observe(a, www)
			tt.q.Next()
			tt.q.Release()
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
			tt := New(config.Top{Sample: n})
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				tt.Observe(a, www)
				if i%1024 == 0 {
					for s := tt.q.Next(); s != nil; s = tt.q.Next() {
						tt.q.Release()
					}
				}
			}
		})
	}
}

// wireName is name in lowercase wire format, as the query path hands it.
func wireName(name string) []byte {
	buf := make([]byte, dnswire.MaxNameLen+1)
	n, err := dns.PackDomainName(strings.ToLower(name), buf, 0, nil, false)
	if err != nil {
		panic(err)
	}
	return buf[:n]
}

func TestRunAndList(t *testing.T) {
	a, www := netip.MustParseAddr("192.0.2.1"), wireName("www.example.")
	t.Run("Run folds what the query path samples, and returns when its context ends", func(t *testing.T) {
		tt := New(config.Top{Sample: 1})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { tt.Run(ctx); close(done) }()
		for range 3 {
			tt.Observe(a, www)
		}
		deadline := time.Now().Add(5 * time.Second)
		for l := tt.List(1); len(l.Names) == 0 || l.Names[0].Queries != 3; l = tt.List(1) {
			if time.Now().After(deadline) {
				t.Fatalf("Run never counted the samples: %+v", l)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	})
	t.Run("the JSON is GET /api/v1/top's", func(t *testing.T) {
		tt := New(config.Top{Sample: 8})
		tt.SetSample(1)
		tt.Observe(a, www)
		tt.drain(time.Now())
		tt.SetSample(8)
		for _, c := range []struct {
			tab  *Table
			want string
		}{
			{tt, `{"enabled":true,"sample":8,"window_seconds":60,"clients":[{"client":"192.0.2.1","queries":1}],"names":[{"name":"www.example.","queries":1}],"dropped":0}`},
			{nil, `{"enabled":false,"sample":0,"window_seconds":60,"clients":[],"names":[],"dropped":0}`},
		} {
			got, err := json.Marshal(c.tab.List(20))
			if err != nil || string(got) != c.want {
				t.Errorf("got %s %v\nwant %s", got, err, c.want)
			}
		}
	})
	t.Run("a reload to 0 stops counting and says so", func(t *testing.T) {
		tt := New(config.Top{Sample: 1})
		tt.SetSample(0)
		tt.Observe(a, www)
		tt.drain(time.Now())
		if l := tt.List(10); l.Enabled || len(l.Names) != 0 {
			t.Errorf("%+v", l)
		}
	})
	t.Run("metrics only while on", func(t *testing.T) {
		for _, c := range []struct {
			tab  *Table
			want int
		}{{New(config.Top{Sample: 1}), 1}, {nil, 0}} {
			ch := make(chan prometheus.Metric, 4)
			c.tab.Collect(ch)
			if len(ch) != c.want {
				t.Errorf("%d metrics, want %d", len(ch), c.want)
			}
		}
	})
}
