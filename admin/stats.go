package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Bounds of the dashboard's history. The ring is computed from the same
// Gatherer that serves /metrics, so the dashboard and Prometheus never
// disagree and the proxy needs no hook of its own.
const (
	// statsEvery is the sample interval: the dashboard redraws every
	// second.
	statsEvery = time.Second
	// statsCapacity is one hour of one-second samples: enough to see the
	// shape of an incident on a wall screen; Prometheus keeps the rest.
	// A sample holds a few small maps (a few hundred bytes), so the ring
	// stays around a megabyte.
	statsCapacity = 3600
	// statsIdle stops the sampler when no one has asked for samples that
	// long: the ring fills while a dashboard (or script) watches, and an
	// unwatched admin server costs nothing. The samples taken stay.
	statsIdle = 10 * time.Minute
	// statsGap is the longest interval one sample may average over; after
	// a longer pause (sampler restarted, machine suspended) the next
	// gather is a fresh baseline and the chart shows a gap.
	statsGap = 3 * statsEvery
)

// StatsSample is one second of the node's traffic, as rates per second
// over the interval that ends at T. Nil ratios and latencies mean there
// was nothing to measure in that second.
type StatsSample struct {
	// T is the end of the interval, Unix seconds.
	T int64 `json:"t"`
	// QPS is queries received, every transport together.
	QPS float64 `json:"qps"`
	// Transport is queries received per second by transport (udp, tcp...).
	Transport map[string]float64 `json:"transport,omitempty"`
	// Rcode is answers per second by rcode: backend answers relayed, and
	// answers anyfront made itself (SERVFAIL with no backend, REFUSED by
	// ACL or rule, FORMERR, NOTIMP, spoofed NOERROR). Cache hits are not
	// split by rcode: they are in Cache.
	Rcode map[string]float64 `json:"rcode,omitempty"`
	// ServFail is SERVFAIL answers per second, relayed and local.
	ServFail float64 `json:"servfail"`
	// ServFailRatio is ServFail over QPS.
	ServFailRatio *float64 `json:"servfail_ratio"`
	// Cache is packet cache events per second (hit, miss, stale, ...),
	// every pool together.
	Cache map[string]float64 `json:"cache,omitempty"`
	// CacheHitRatio is hits over hits plus misses.
	CacheHitRatio *float64 `json:"cache_hit_ratio"`
	// P50MS and P99MS are backend answer latency quantiles in ms, from
	// anyfront_proxy_backend_latency_seconds over every backend,
	// interpolated within buckets as Prometheus's histogram_quantile does.
	P50MS *float64 `json:"p50_ms"`
	P99MS *float64 `json:"p99_ms"`
	// Dropped is queries dropped per second (malformed, drop rules).
	Dropped float64 `json:"dropped"`
	// XDP is XDP verdicts per second, present when XDP is configured.
	XDP map[string]float64 `json:"xdp,omitempty"`
}

// StatsView is the body of GET /api/v1/stats.
type StatsView struct {
	// IntervalSeconds is the sample interval.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Capacity is how many samples the ring holds (one hour).
	Capacity int `json:"capacity"`
	// XDP is true when the node exports XDP verdict counters.
	XDP bool `json:"xdp"`
	// Samples are oldest first, only those after ?since= when given.
	Samples []StatsSample `json:"samples"`
}

// statsRing samples the Gatherer every statsEvery into a bounded ring.
type statsRing struct {
	gather func() ([]*dto.MetricFamily, error)
	every  time.Duration
	idle   time.Duration
	now    func() time.Time

	mu      sync.Mutex
	buf     []StatsSample // ring of capacity len(buf)
	start   int           // index of the oldest sample
	n       int           // samples held
	prev    map[string]point
	prevAt  time.Time
	xdp     bool
	running bool
	wanted  time.Time // last time someone read the ring
	done    chan struct{}
	// kept is set while the server runs (keep): the ring then fills
	// whether anyone reads it or not.
	kept bool
	kick chan struct{}
}

func newStatsRing(g prometheus.Gatherer, capacity int) *statsRing {
	return &statsRing{
		gather: g.Gather, every: statsEvery, idle: statsIdle, now: time.Now,
		buf: make([]StatsSample, capacity), kick: make(chan struct{}, 1),
	}
}

// keep samples until ctx ends, read or not: whoever opens the dashboard
// after an incident finds the hour before it. It returns once the sampler
// has stopped.
func (r *statsRing) keep(ctx context.Context) {
	r.mu.Lock()
	r.kept = true
	r.mu.Unlock()
	r.want()
	<-ctx.Done()
	r.mu.Lock()
	r.kept, r.wanted = false, time.Time{}
	done := r.done
	r.mu.Unlock()
	select {
	case r.kick <- struct{}{}:
	default:
	}
	<-done
}

// statsHandler serves GET /api/v1/stats from a ring over Deps.Gatherer (or
// the admin collector alone, as /metrics does); Run keeps the ring filled.
func (s *Server) statsHandler() http.HandlerFunc {
	if s.stats == nil {
		g := s.deps.Gatherer
		if g == nil {
			reg := prometheus.NewRegistry()
			reg.MustRegister(s.metrics)
			g = reg
		}
		s.stats = newStatsRing(g, statsCapacity)
	}
	return s.stats.serve
}

func (r *statsRing) serve(w http.ResponseWriter, req *http.Request) {
	var since int64
	if v := req.URL.Query().Get("since"); v != "" {
		var err error
		if since, err = strconv.ParseInt(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, "since must be Unix seconds")
			return
		}
	}
	r.want()
	view := r.view(since)
	// Compact, not indented like the rest of the API: an hour of samples
	// is a few hundred kilobytes.
	body, err := json.Marshal(view)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encode stats: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// view copies the samples after since, oldest first.
func (r *statsRing) view(since int64) StatsView {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := StatsView{IntervalSeconds: r.every.Seconds(), Capacity: len(r.buf), XDP: r.xdp, Samples: []StatsSample{}}
	for i := range r.n {
		s := r.buf[(r.start+i)%len(r.buf)]
		if s.T > since {
			v.Samples = append(v.Samples, s)
		}
	}
	return v
}

// want records a reader and starts the sampler if it is not running. The
// sampler stops itself once no one has read for r.idle, unless kept.
func (r *statsRing) want() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wanted = r.now()
	if r.running {
		return
	}
	r.running = true
	r.done = make(chan struct{})
	go r.loop(r.done)
}

func (r *statsRing) loop(done chan struct{}) {
	defer close(done)
	// The first gather is a baseline: take it now, so the reader gets
	// rates one interval later rather than two.
	r.tick()
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-r.kick:
		}
		r.mu.Lock()
		idle := !r.kept && r.now().Sub(r.wanted) > r.idle
		if idle {
			r.running = false
		}
		r.mu.Unlock()
		if idle {
			return
		}
		r.tick()
	}
}

// tick gathers once and appends a sample.
func (r *statsRing) tick() {
	mfs, err := r.gather()
	if err != nil && len(mfs) == 0 {
		// A partial gather (one broken collector) still has the rest.
		return
	}
	r.add(r.now(), mfs)
}

// add turns a gather at now into a sample against the previous gather.
func (r *statsRing) add(now time.Time, mfs []*dto.MetricFamily) {
	cur, xdp := points(mfs)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.xdp = xdp
	prev, prevAt := r.prev, r.prevAt
	r.prev, r.prevAt = cur, now
	dt := now.Sub(prevAt)
	if prev == nil || dt <= 0 || dt > statsGap {
		return // a baseline
	}
	if r.n > 0 && r.buf[(r.start+r.n-1)%len(r.buf)].T >= now.Unix() {
		// Two gathers in one wall-clock second (a late tick, then an
		// on-time one): keep the earlier sample and let the next one
		// span both, so T stays strictly increasing for ?since=.
		r.prev, r.prevAt = prev, prevAt
		return
	}
	s := sampleOf(now, dt, prev, cur, xdp)
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = s
		r.n++
		return
	}
	r.buf[r.start] = s
	r.start = (r.start + 1) % len(r.buf)
}
