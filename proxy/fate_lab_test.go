package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/internal/rtt"
	"github.com/anyfront/anyfront/state"
)

// outcomeCounts records every outcome the proxy reports, per backend.
type outcomeCounts struct {
	mu sync.Mutex
	n  map[string]map[state.Outcome]int
}

type outcomeObserver struct {
	c    *outcomeCounts
	name string
}

func (o outcomeObserver) Observe(out state.Outcome, _ int64) {
	o.c.mu.Lock()
	o.c.n[o.name][out]++
	o.c.mu.Unlock()
}

func (c *outcomeCounts) Observer(name string) state.Observer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[name] == nil {
		c.n[name] = map[state.Outcome]int{}
	}
	return outcomeObserver{c, name}
}

func (c *outcomeCounts) get(name string, o state.Outcome) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[name][o]
}

// warm sends n queries so every backend's RTT is measured.
func warm(t *testing.T, l *lab, n int) {
	t.Helper()
	if err := hammer(l, "udp", 4, n, noerror); err != nil {
		t.Fatal(err)
	}
}

// slowest runs n queries, 4 at a time, and returns the slowest answer's
// time; every answer must be NOERROR.
func slowest(t *testing.T, l *lab, n int) time.Duration {
	t.Helper()
	var worst atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/4; i++ {
				start := time.Now()
				r, err := l.exchange("udp", dnstest.Query(fmt.Sprintf("s%d-%d.%s", w, i, testlab.RandZone), dns.TypeA))
				if err != nil || r.Rcode != dns.RcodeSuccess {
					t.Errorf("query: %v %v", err, r)
					return
				}
				if d := int64(time.Since(start)); d > worst.Load() {
					worst.Store(d)
				}
			}
		}()
	}
	wg.Wait()
	return time.Duration(worst.Load())
}

func TestLabQueryFate(t *testing.T) {
	testlab.RequireBinary(t, "unbound")

	t.Run("a hung backend costs its RTO, not a fixed timeout", func(t *testing.T) {
		l := startLab(t, 2, "", "")
		warm(t, l, 400)
		if err := l.backends[1].Stop(); err != nil {
			t.Fatal(err)
		}
		defer l.backends[1].Cont()
		worst := slowest(t, l, 200)
		// The RTO of a backend answering in well under a millisecond is
		// the 20 ms floor; the old fixed timeout was 2 s.
		if worst > 300*time.Millisecond {
			t.Errorf("slowest answer took %v with one hung backend, want about the 20 ms RTO floor", worst)
		}
		if l.p.stats.Timeouts.Load() == 0 {
			t.Error("no attempt timed out")
		}
	})

	t.Run("hung backends get SERVFAIL at the deadline", func(t *testing.T) {
		l := startLab(t, 2, "", "proxy: {deadline: 500ms, timeout: 100ms}")
		for _, u := range l.backends {
			if err := u.Stop(); err != nil {
				t.Fatal(err)
			}
			defer u.Cont()
		}
		for _, network := range []string{"udp", "tcp"} {
			start := time.Now()
			r, err := l.exchange(network, dnstest.Query("hung.demo.test.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s: want SERVFAIL, got %s", network, dns.RcodeToString[r.Rcode])
			}
			if d < 450*time.Millisecond || d > 1500*time.Millisecond {
				t.Errorf("%s: SERVFAIL after %v, want at the 500 ms deadline", network, d)
			}
		}
		if n := l.p.stats.DeadlinePassed.Load(); n != 2 {
			t.Errorf("deadline_passed = %d, want 2", n)
		}
	})

	t.Run("a late answer is an answer: no timeout reported for it", func(t *testing.T) {
		counts := &outcomeCounts{n: map[string]map[state.Outcome]int{}}
		u := testlab.StartUnbound(t, testlab.UnboundOptions{})
		port, err := testlab.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		l := runConfig(t, addr, fmt.Sprintf("listen: [{address: %q}]\npools:\n  default:\n    backends: [{name: r1, address: %q}]\n", addr, u.Addr),
			func(p *Proxy) { p.outcomes = counts })
		warm(t, l, 100)
		// Frozen for less than the deadline: attempts time out and go
		// again (to the same backend, the only one), and the answers
		// come once it thaws.
		if err := u.Stop(); err != nil {
			t.Fatal(err)
		}
		done := make(chan *dns.Msg, 1)
		go func() {
			r, _ := l.exchange("udp", dnstest.Query("late."+testlab.RandZone, dns.TypeA))
			done <- r
		}()
		time.Sleep(150 * time.Millisecond)
		if err := u.Cont(); err != nil {
			t.Fatal(err)
		}
		r := <-done
		if r == nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("answer: %v", r)
		}
		if l.p.stats.Timeouts.Load() == 0 {
			t.Error("no attempt timed out while the backend was frozen")
		}
		// Give the other attempts' answers time to come in.
		deadline := time.Now().Add(2 * time.Second)
		for l.p.shards[0].inflight() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := counts.get("r1", state.OutcomeTimeout); n != 0 {
			t.Errorf("%d timeouts reported to health checking for a backend that answered within the deadline", n)
		}
	})

	t.Run("a slow first attempt is hedged, within the budget", func(t *testing.T) {
		l := startLab(t, 2, "", "")
		warm(t, l, 600) // enough answers for the pool's percentile
		if err := l.backends[1].Stop(); err != nil {
			t.Fatal(err)
		}
		defer l.backends[1].Cont()
		const n = 400
		worst := slowest(t, l, n)
		hedges, denied := l.p.stats.Hedges.Load(), l.p.stats.HedgesDenied.Load()
		t.Logf("hedges %d, denied %d, slowest %v", hedges, denied, worst)
		if hedges == 0 {
			t.Error("no query was hedged")
		}
		// Budget: 5% of the queries since the start, plus the saved burst.
		queries := l.p.stats.UDPQueries.Load()
		if limit := queries*5/100 + rtt.HedgeBurst/1000 + 2; hedges > limit {
			t.Errorf("%d hedges for %d queries, over the 5%% budget (%d)", hedges, queries, limit)
		}
		if denied == 0 {
			t.Error("the budget never said no, with half the first attempts slow")
		}
	})

	t.Run("a slow first dnswire.TCP attempt is hedged too", func(t *testing.T) {
		l := startLab(t, 2, "", "")
		warm(t, l, 600)
		if err := l.backends[1].Stop(); err != nil {
			t.Fatal(err)
		}
		defer l.backends[1].Cont()
		before := l.p.stats.Hedges.Load()
		if err := hammer(l, "tcp", 4, 200, noerror); err != nil {
			t.Fatal(err)
		}
		if l.p.stats.Hedges.Load() == before {
			t.Error("no dnswire.TCP query was hedged")
		}
	})
}
