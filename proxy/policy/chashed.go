package policy

import (
	"cmp"
	"slices"
)

const (
	// vnodesPerWeight is how many ring points a backend gets per unit of
	// weight. With 100, each backend's share of names is within about 10%
	// of its fair share (the spread shrinks as 1/sqrt(points)), at 12 bytes
	// a point; more points buy little evenness for more memory and rebuild
	// time.
	vnodesPerWeight = 100

	// maxRingPoints bounds the ring (12 MiB) and its rebuild time when
	// weights are large. Past it every backend's point count is scaled down
	// in proportion, which keeps shares but moves more names on a change
	// than the ideal 1/n.
	maxRingPoints = 1 << 20

	// Bounded-load factor c = loadNum/loadDen = 1.25 (Mirrokni, Thorup,
	// Zadimoghaddam, "Consistent Hashing with Bounded Loads", as HAProxy's
	// hash-balance-factor 125 and Envoy's hash_balance_factor use it): a
	// backend takes at most 25% more than its share of the queries in
	// flight before its names spill to the next backend on the ring. Lower
	// evens load but moves more names, which hurts backend cache hit rates.
	loadNum = 5
	loadDen = 4
)

// consistentHash maps a name to a backend through a ring of virtual nodes,
// so the same name goes to the same backend (whose cache then holds it) on
// every anyfront node, and a backend joining or leaving moves only the names
// it takes or had. Loads are bounded: a backend already over its bound is
// passed over for the next one on the ring, so one hot name cannot melt it.
type consistentHash struct {
	points  []uint64 // ring positions, ascending
	owners  []int32  // owners[k] is the backend index at points[k]
	stats   []*Stats
	weights []uint64
	wsum    uint64 // sum of weights
}

func newConsistentHash(bs []*Backend) *consistentHash {
	p := &consistentHash{stats: make([]*Stats, len(bs)), weights: make([]uint64, len(bs))}
	var total uint64
	for i, b := range bs {
		p.stats[i] = b.Stats
		p.weights[i] = weight(b)
		p.wsum += p.weights[i]
		total += p.weights[i] * vnodesPerWeight
	}
	vnodes := func(w uint64) uint64 {
		v := w * vnodesPerWeight
		if total > maxRingPoints {
			v = max(v*maxRingPoints/total, 1)
		}
		return v
	}
	type point struct {
		pos   uint64
		owner int32
	}
	ring := make([]point, 0, min(total, maxRingPoints+uint64(len(bs))))
	for i, b := range bs {
		for k := range uint32(vnodes(p.weights[i])) {
			ring = append(ring, point{ringPoint(b.Name, k), int32(i)})
		}
	}
	// Ties (equal positions, astronomically rare) are broken by name, not by
	// index, so the ring does not depend on the order backends are listed.
	slices.SortFunc(ring, func(a, b point) int {
		if c := cmp.Compare(a.pos, b.pos); c != 0 {
			return c
		}
		if c := cmp.Compare(bs[a.owner].Name, bs[b.owner].Name); c != 0 {
			return c
		}
		return cmp.Compare(a.owner, b.owner)
	})
	p.points = make([]uint64, len(ring))
	p.owners = make([]int32, len(ring))
	for k, pt := range ring {
		p.points[k], p.owners[k] = pt.pos, pt.owner
	}
	return p
}

// Pick finds hash's successor on the ring and walks on from there to the
// first backend that is not skipped and is within its load bound. If every
// backend is over its bound (possible only because skipped ones still carry
// load, or through racy reads), it returns the first non-skipped backend on
// the walk, the name's plain consistent-hash owner: spreading further would
// only break affinity without relieving anyone.
//
// The bound for backend i is ceil(c × (T+1) × w_i / W), with T the queries in
// flight in the pool, w_i its weight and W the sum of weights; with equal
// weights that is the paper's ceil(c × (T+1) / n). Weighting it keeps a
// weight-3 backend, which owns three times the names, from shedding at a
// third of its intended load.
func (p *consistentHash) Pick(hash uint64, skip uint64) int {
	n := len(p.stats)
	if n == 0 {
		return -1
	}
	small := n <= 64 // masks track backends exactly only up to 64
	all := allMask(n)
	if small && skip&all == all {
		return -1
	}
	var inflight uint64
	for _, s := range p.stats {
		inflight += uint64(outstanding(s))
	}
	// Accept i iff O_i+1 <= ceil(num_i/den), i.e. num_i > O_i*den, with
	// num_i = c_num*(T+1)*w_i and den = c_den*W: integers, no division.
	allowance := loadNum * (inflight + 1)
	den := loadDen * p.wsum

	// First point at or after hash, wrapping to 0.
	lo, hi := 0, len(p.points)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if p.points[mid] < hash {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	k := lo
	if k == len(p.points) {
		k = 0
	}
	first := -1
	var tried uint64
	for range len(p.points) {
		i := int(p.owners[k])
		if k++; k == len(p.points) {
			k = 0
		}
		bit := uint64(1) << (uint(i) & 63)
		if skip&bit != 0 || small && tried&bit != 0 {
			continue
		}
		if first < 0 {
			first = i
		}
		if allowance*p.weights[i] > uint64(outstanding(p.stats[i]))*den {
			return i
		}
		tried |= bit
		if small && (tried|skip)&all == all {
			break
		}
	}
	return first
}
