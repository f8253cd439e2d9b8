package admin

import (
	"math"
	"sync"
	"time"

	"github.com/anyfront/anyfront/state"
)

// qpsHalfLife is how fast the reported qps follows a change in traffic: one
// second keeps the dashboard lively while smoothing the jitter of
// one-second samples.
const qpsHalfLife = time.Second

// rates turns each backend's growing query counter into a smoothed rate
// (an exponentially weighted moving average of per-interval rates).
type rates struct {
	mu   sync.Mutex
	last map[string]rateSample
}

type rateSample struct {
	at      time.Time
	queries uint64
	qps     float64
	primed  bool // one interval measured: qps is a real rate, not a seed
}

func newRates() *rates { return &rates{last: map[string]rateSample{}} }

// sample reads every backend's counter at now and updates its rate.
// Backends gone from the store are forgotten, so the map stays bounded by
// the config.
func (r *rates) sample(now time.Time, backends []*state.Backend, live LiveStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(backends))
	for _, b := range backends {
		l, ok := live.BackendLive(b.Name)
		if !ok {
			continue
		}
		seen[b.Name] = true
		prev, had := r.last[b.Name]
		next := rateSample{at: now, queries: l.Queries}
		dt := now.Sub(prev.at).Seconds()
		switch {
		case !had || dt <= 0:
			// First sight: only a baseline.
		case l.Queries < prev.queries:
			// The counter restarted (the proxy rebuilt the backend after a
			// reload): keep the rate, re-baseline.
			next.qps, next.primed = prev.qps, prev.primed
		default:
			inst := float64(l.Queries-prev.queries) / dt
			if !prev.primed {
				next.qps = inst
			} else {
				// Weight the new sample by the time it covers, so a
				// late tick does not count as much as a full interval.
				alpha := 1 - math.Exp2(-dt/qpsHalfLife.Seconds())
				next.qps = prev.qps + alpha*(inst-prev.qps)
			}
			next.primed = true
		}
		r.last[b.Name] = next
	}
	for name := range r.last {
		if !seen[name] {
			delete(r.last, name)
		}
	}
}

// get returns a backend's current qps, 0 before two samples.
func (r *rates) get(name string) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Two decimals are plenty for people and keep the JSON readable.
	return math.Round(r.last[name].qps*100) / 100
}
