package policy

// leastOutstanding sends a query to the backend with the fewest queries in
// flight, as dnsdist's leastOutstanding does: ties go to the lower Order, then
// to the lower latency, then to the lower index.
//
// It scans every backend per pick (one or two atomic loads each); pools are
// tens of backends, and a full scan gives the exact minimum that operators
// expect from the name, which power-of-two choices (see latency) does not.
type leastOutstanding struct {
	bs []*Backend
}

func newLeastOutstanding(bs []*Backend) *leastOutstanding {
	return &leastOutstanding{bs: bs}
}

// Pick returns the non-skipped backend with the lowest (Outstanding, Order,
// LatencyUS). An unknown latency (0) sorts first, so among idle equals a new
// backend is tried and gets measured.
func (p *leastOutstanding) Pick(_ uint64, skip uint64) int {
	best := -1
	var bestOut, bestLat int64
	var bestOrder int
	for i, b := range p.bs {
		if skipped(skip, i) {
			continue
		}
		out := outstanding(b.Stats)
		if best >= 0 {
			if out > bestOut || out == bestOut && b.Order > bestOrder {
				continue
			}
			if out == bestOut && b.Order == bestOrder {
				// Latency is loaded only on a tie: the common case costs one
				// atomic load per backend.
				if b.Stats.LatencyUS.Load() >= bestLat {
					continue
				}
			}
		}
		best, bestOut, bestOrder, bestLat = i, out, b.Order, b.Stats.LatencyUS.Load()
	}
	return best
}
