package policy

import "sync/atomic"

// roundRobin hands queries to backends in turn, ignoring weight.
type roundRobin struct {
	n int
	// Padding keeps the counter, which every worker writes, off the cache
	// line holding n, which every worker reads, so reads do not miss each
	// time another core picks.
	_    [56]byte
	next atomic.Uint64
	_    [56]byte
}

func newRoundRobin(bs []*Backend) *roundRobin {
	return &roundRobin{n: len(bs)}
}

// Pick takes the next index in turn and, if it is skipped, the first one after
// it that is not. The counter advances once per pick, not once per skipped
// backend, so a retry does not shift the rotation for other queries.
func (p *roundRobin) Pick(_ uint64, skip uint64) int {
	n := p.n
	if n == 0 {
		return -1
	}
	i := int((p.next.Add(1) - 1) % uint64(n))
	for range n {
		if !skipped(skip, i) {
			return i
		}
		if i++; i == n {
			i = 0
		}
	}
	return -1
}
