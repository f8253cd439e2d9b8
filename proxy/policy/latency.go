package policy

import "math/rand/v2"

// exploreOneIn makes one pick in this many ignore scores and go to a uniformly
// random non-skipped backend. Without it, at low load a backend that once was
// slow never gets another query, so its latency average never recovers and it
// stays shunned after it is fixed. 1% keeps every backend measured within
// seconds at any real query rate while costing the fast path little.
const exploreOneIn = 100

// latencyP2C is power of two random choices (Mitzenmacher) scored by
// expected wait: latency × (outstanding+1), as Linkerd's and Finagle's
// peak-EWMA balancers do. Two random candidates instead of the global best
// means no scan and no herd: workers acting on the same stale counters do not
// all pile onto the one backend that looked best.
type latencyP2C struct {
	stats []*Stats
}

func newLatency(bs []*Backend) *latencyP2C {
	p := &latencyP2C{stats: make([]*Stats, len(bs))}
	for i, b := range bs {
		p.stats[i] = b.Stats
	}
	return p
}

// Pick draws two distinct non-skipped backends and returns the one with the
// lower score. A backend with unknown latency (0) is scored with its rival's
// latency (1µs if both are unknown) and wins ties, so a new backend gets
// queries and gets measured; its outstanding count, not a make-believe 0µs,
// then stops it from taking everything until its first answers arrive.
func (p *latencyP2C) Pick(_ uint64, skip uint64) int {
	n := len(p.stats)
	m := live(n, skip)
	switch m {
	case 0:
		return -1
	case 1:
		return nthLive(n, skip, 0)
	}
	if rand.Uint64N(exploreOneIn) == 0 {
		return nthLive(n, skip, int(rand.Uint64N(uint64(m))))
	}
	a := int(rand.Uint64N(uint64(m)))
	b := int(rand.Uint64N(uint64(m - 1)))
	if b >= a {
		b++ // distinct from a, still uniform
	}
	if m < n { // some are skipped: map ranks among the rest to indexes
		a, b = nthLive(n, skip, a), nthLive(n, skip, b)
	}
	la, lb := p.stats[a].LatencyUS.Load(), p.stats[b].LatencyUS.Load()
	bUnknown := lb <= 0
	switch {
	case la <= 0 && lb <= 0:
		la, lb = 1, 1
	case la <= 0:
		la = lb
	case lb <= 0:
		lb = la
	}
	// Both factors are small (µs of latency, queries in flight), far from
	// overflowing int64.
	sa := la * (outstanding(p.stats[a]) + 1)
	sb := lb * (outstanding(p.stats[b]) + 1)
	if sb < sa || sb == sa && bUnknown {
		return b
	}
	return a
}
