package policy

import "slices"

// firstAvailable sends everything to the backend with the lowest Order and
// moves to the next only for what it skips: an active/standby pool. Backends
// that are down or drained are already out of the snapshot, so "available"
// here means "not yet tried for this query".
type firstAvailable struct {
	byOrder []int // indexes sorted by Order, then by index
}

func newFirstAvailable(bs []*Backend) *firstAvailable {
	p := &firstAvailable{byOrder: make([]int, len(bs))}
	for i := range bs {
		p.byOrder[i] = i
	}
	// Stable, so equal Orders keep config order: deterministic across nodes
	// and reloads.
	slices.SortStableFunc(p.byOrder, func(a, b int) int { return bs[a].Order - bs[b].Order })
	return p
}

// Pick returns the first backend in Order that skip leaves.
func (p *firstAvailable) Pick(_ uint64, skip uint64) int {
	for _, i := range p.byOrder {
		if !skipped(skip, i) {
			return i
		}
	}
	return -1
}
