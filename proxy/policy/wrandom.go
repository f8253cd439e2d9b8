package policy

import "math/rand/v2"

// weightedRandom picks a backend at random with probability proportional to
// its weight. Random rather than smooth weighted round robin: no shared state
// to contend on between workers, and over many queries it converges as well.
type weightedRandom struct {
	weights []uint64
	cum     []uint64 // cum[i] = weights[0] + ... + weights[i]
	total   uint64
}

func newWeightedRandom(bs []*Backend) *weightedRandom {
	p := &weightedRandom{weights: make([]uint64, len(bs)), cum: make([]uint64, len(bs))}
	for i, b := range bs {
		p.weights[i] = weight(b)
		p.total += p.weights[i]
		p.cum[i] = p.total
	}
	return p
}

// Pick draws once over all backends (binary search of the cumulative
// weights). Only when the draw lands on a skipped backend, which happens on
// retries, does it redraw over the rest with a linear walk, so the retry is
// weighted exactly among the remaining backends rather than shifted onto the
// skipped one's neighbour.
func (p *weightedRandom) Pick(_ uint64, skip uint64) int {
	n := len(p.weights)
	if n == 0 {
		return -1
	}
	r := rand.Uint64N(p.total)
	lo, hi := 0, n-1 // first i with cum[i] > r; cum[n-1] = total > r
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.cum[mid] > r {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if !skipped(skip, lo) {
		return lo
	}
	var rest uint64
	for i, w := range p.weights {
		if !skipped(skip, i) {
			rest += w
		}
	}
	if rest == 0 {
		return -1
	}
	r = rand.Uint64N(rest)
	for i, w := range p.weights {
		if skipped(skip, i) {
			continue
		}
		if r < w {
			return i
		}
		r -= w
	}
	return -1 // unreachable: the walk consumes exactly rest
}
