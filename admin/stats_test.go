package admin

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// proxyLike registers the proxy's dashboard families on a registry the
// test drives by hand.
type proxyLike struct {
	reg       *prometheus.Registry
	queries   *prometheus.CounterVec
	responses *prometheus.CounterVec
	local     *prometheus.CounterVec
	cache     *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	xdp       *prometheus.CounterVec
}

func newProxyLike(t *testing.T, withXDP bool) *proxyLike {
	t.Helper()
	p := &proxyLike{
		reg:       prometheus.NewRegistry(),
		queries:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: famQueries}, []string{"transport"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{Name: famResponses}, []string{"rcode"}),
		local:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: famLocal}, []string{"reason"}),
		cache:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: famCache}, []string{"pool", "event"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: famLatency,
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"backend", "pool"}),
		xdp: prometheus.NewCounterVec(prometheus.CounterOpts{Name: famXDP}, []string{"verdict"}),
	}
	p.reg.MustRegister(p.queries, p.responses, p.local, p.cache, p.latency)
	if withXDP {
		p.reg.MustRegister(p.xdp)
	}
	return p
}

// at feeds the ring one gather taken at t0+sec.
func (p *proxyLike) at(t *testing.T, r *statsRing, t0 time.Time, sec float64) {
	t.Helper()
	mfs, err := p.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	r.add(t0.Add(time.Duration(sec*float64(time.Second))), mfs)
}

func last(t *testing.T, r *statsRing) StatsSample {
	t.Helper()
	v := r.view(0)
	if len(v.Samples) == 0 {
		t.Fatal("no sample")
	}
	return v.Samples[len(v.Samples)-1]
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-3 }

var t0 = time.Unix(1_800_000_000, 0)

func TestStatsRates(t *testing.T) {
	t.Run("counters become per-second rates split by label", func(t *testing.T) {
		p := newProxyLike(t, false)
		r := newStatsRing(p.reg, 10)
		p.queries.WithLabelValues("udp").Add(1000)
		p.cache.WithLabelValues("default", "hit").Add(500)
		p.at(t, r, t0, 0)
		if n := len(r.view(0).Samples); n != 0 {
			t.Fatalf("the first gather is a baseline, got %d samples", n)
		}
		p.queries.WithLabelValues("udp").Add(300)
		p.queries.WithLabelValues("tcp").Add(100)
		p.responses.WithLabelValues("NOERROR").Add(150)
		p.local.WithLabelValues("servfail_no_backend").Add(20)
		p.local.WithLabelValues("acl_refused").Add(10)
		p.cache.WithLabelValues("default", "hit").Add(150)
		p.cache.WithLabelValues("default", "miss").Add(50)
		p.at(t, r, t0, 2)
		s := last(t, r)
		if s.T != t0.Unix()+2 || !near(s.QPS, 200) || !near(s.Transport["udp"], 150) || !near(s.Transport["tcp"], 50) {
			t.Errorf("qps %v transport %v at %d", s.QPS, s.Transport, s.T)
		}
		if !near(s.Rcode["NOERROR"], 75) || !near(s.Rcode["SERVFAIL"], 10) || !near(s.Rcode["REFUSED"], 5) || !near(s.ServFail, 10) {
			t.Errorf("rcode %v servfail %v", s.Rcode, s.ServFail)
		}
		if s.ServFailRatio == nil || !near(*s.ServFailRatio, 0.05) {
			t.Errorf("servfail ratio %v, want 0.05", s.ServFailRatio)
		}
		if s.CacheHitRatio == nil || !near(*s.CacheHitRatio, 0.75) {
			t.Errorf("cache hit ratio %v, want 0.75", s.CacheHitRatio)
		}
		if s.P50MS != nil || s.XDP != nil {
			t.Errorf("no latency or XDP expected: %v %v", s.P50MS, s.XDP)
		}
	})
	t.Run("an idle second has no ratios", func(t *testing.T) {
		p := newProxyLike(t, false)
		r := newStatsRing(p.reg, 10)
		p.at(t, r, t0, 0)
		p.at(t, r, t0, 1)
		s := last(t, r)
		if s.QPS != 0 || s.ServFailRatio != nil || s.CacheHitRatio != nil || s.P99MS != nil {
			t.Errorf("%+v", s)
		}
	})
	t.Run("a series that appears counted from zero", func(t *testing.T) {
		p := newProxyLike(t, false)
		r := newStatsRing(p.reg, 10)
		p.queries.WithLabelValues("udp").Add(10)
		p.at(t, r, t0, 0)
		// The proxy exports an rcode only once it has counted one.
		p.queries.WithLabelValues("udp").Add(40)
		p.responses.WithLabelValues("SERVFAIL").Add(40)
		p.at(t, r, t0, 1)
		if s := last(t, r); !near(s.ServFail, 40) || *s.ServFailRatio != 1 {
			t.Errorf("servfail %v ratio %v, want 40 and 1", s.ServFail, *s.ServFailRatio)
		}
	})
	t.Run("a counter that went down was reset", func(t *testing.T) {
		r := newStatsRing(prometheus.NewRegistry(), 10)
		cur := func(v float64) map[string]point {
			return map[string]point{famQueries + "{transport=udp,}": {famQueries, "udp", v}}
		}
		r.prev, r.prevAt = cur(1000), t0
		s := sampleOf(t0.Add(time.Second), time.Second, cur(1000), cur(7), false)
		if !near(s.QPS, 7) {
			t.Errorf("qps %v after a reset to 7, want 7", s.QPS)
		}
	})
	t.Run("a long pause starts a new baseline", func(t *testing.T) {
		p := newProxyLike(t, false)
		r := newStatsRing(p.reg, 10)
		p.at(t, r, t0, 0)
		p.queries.WithLabelValues("udp").Add(1e6)
		p.at(t, r, t0, 600)
		if n := len(r.view(0).Samples); n != 0 {
			t.Errorf("a 10-minute gap gave %d samples; it must not average over the gap", n)
		}
		p.at(t, r, t0, 601)
		if n := len(r.view(0).Samples); n != 1 {
			t.Errorf("%d samples after the new baseline, want 1", n)
		}
	})
	t.Run("XDP verdicts when XDP is on", func(t *testing.T) {
		p := newProxyLike(t, true)
		r := newStatsRing(p.reg, 10)
		for _, v := range []string{"pass", "blocked", "ratelimited", "malformed", "answered"} {
			p.xdp.WithLabelValues(v)
		}
		p.at(t, r, t0, 0)
		p.xdp.WithLabelValues("blocked").Add(30)
		p.at(t, r, t0, 1)
		v := r.view(0)
		if !v.XDP || !near(v.Samples[0].XDP["blocked"], 30) {
			t.Errorf("xdp %v %v", v.XDP, v.Samples[0].XDP)
		}
	})
}

func TestStatsRingIsBounded(t *testing.T) {
	p := newProxyLike(t, false)
	r := newStatsRing(p.reg, 5)
	for i := range 20 {
		p.queries.WithLabelValues("udp").Add(float64(i))
		p.at(t, r, t0, float64(i))
	}
	v := r.view(0)
	if len(v.Samples) != 5 || v.Capacity != 5 {
		t.Fatalf("%d samples, capacity %d; want 5 and 5", len(v.Samples), v.Capacity)
	}
	for i, s := range v.Samples {
		if want := t0.Unix() + int64(15+i); s.T != want || !near(s.QPS, float64(15+i)) {
			t.Errorf("sample %d: t %d qps %v, want t %d qps %d", i, s.T, s.QPS, want, 15+i)
		}
	}
	if got := r.view(t0.Unix() + 17).Samples; len(got) != 2 || got[0].T != t0.Unix()+18 {
		t.Errorf("since: %+v", got)
	}
	// Two gathers in the same second keep T strictly increasing.
	p.at(t, r, t0, 19.5)
	if n := len(r.view(t0.Unix() + 19).Samples); n != 0 {
		t.Errorf("a second gather within one second added a sample")
	}
}

func TestStatsLatencyQuantiles(t *testing.T) {
	p := newProxyLike(t, false)
	r := newStatsRing(p.reg, 10)
	p.latency.WithLabelValues("r1", "default").Observe(5) // before the baseline: not counted
	p.at(t, r, t0, 0)
	// 90 fast answers from r1, 10 slow ones from r2: the two backends'
	// buckets add up.
	for range 90 {
		p.latency.WithLabelValues("r1", "default").Observe(.0003)
	}
	for range 10 {
		p.latency.WithLabelValues("r2", "default").Observe(.02)
	}
	p.at(t, r, t0, 1)
	s := last(t, r)
	// p50: rank 50 of 90 in (0.25ms, 0.5ms]; p99: rank 99, the 9th of 10
	// in (10ms, 25ms].
	if s.P50MS == nil || !near(*s.P50MS, 0.25+0.25*50/90) {
		t.Errorf("p50 %v ms, want %.3f", deref(s.P50MS), 0.25+0.25*50/90)
	}
	if s.P99MS == nil || !near(*s.P99MS, 10+15*9.0/10) {
		t.Errorf("p99 %v ms, want 23.5", deref(s.P99MS))
	}

	for _, tt := range []struct {
		name    string
		q       float64
		buckets map[string]float64
		want    float64
		ok      bool
	}{
		{"no observations", .5, map[string]float64{"0.1": 0, "+Inf": 0}, 0, false},
		{"all in the first bucket interpolate from 0", .5, map[string]float64{"0.1": 10, "1": 10, "+Inf": 10}, .05, true},
		{"beyond the last bound is the last bound", .99, map[string]float64{"0.1": 1, "1": 1, "+Inf": 10}, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := quantile(tt.q, tt.buckets)
			if ok != tt.ok || !near(got, tt.want) {
				t.Errorf("quantile %v = %v, %v; want %v, %v", tt.q, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestStatsEndpoint(t *testing.T) {
	p := newProxyLike(t, false)
	r := newStatsRing(p.reg, 10)
	r.every, r.idle = 10*time.Millisecond, 200*time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	defer srv.Close()
	get := func(q string) (int, StatsView) {
		res, err := http.Get(srv.URL + q)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v StatsView
		_ = json.NewDecoder(res.Body).Decode(&v)
		return res.StatusCode, v
	}
	if code, _ := get("?since=yesterday"); code != 400 {
		t.Errorf("since=yesterday: %d, want 400", code)
	}
	t.Run("a read starts the sampler and it stops when no one reads", func(t *testing.T) {
		code, v := get("")
		if code != 200 || v.Capacity != 10 || v.Samples == nil {
			t.Fatalf("%d %+v", code, v)
		}
		// Samples are one per wall-clock second.
		deadline := time.Now().Add(5 * time.Second)
		for len(v.Samples) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no sample within 5s of the first read")
			}
			time.Sleep(50 * time.Millisecond)
			_, v = get("")
		}
		r.mu.Lock()
		done := r.done
		r.mu.Unlock()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the sampler did not stop after the idle time")
		}
		r.mu.Lock()
		running := r.running
		r.mu.Unlock()
		if running {
			t.Error("stopped sampler still marked running")
		}
		if _, v2 := get(""); len(v2.Samples) < len(v.Samples) {
			t.Error("samples lost when the sampler stopped")
		}
		r.mu.Lock()
		done = r.done
		r.mu.Unlock()
		<-done // the read above restarted it; wait for it to stop again
	})
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}
