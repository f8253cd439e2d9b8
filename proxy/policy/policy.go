// Package policy holds the backend-selection policies of the DNS forwarding hot
// path: given a pool's usable backends and a query, pick the backend to send it to.
//
// A Policy is built once per routing snapshot (so per state change, not per
// query) and then read by every worker at once. Everything that can be
// precomputed (cumulative weights, the hash ring, the order of preference) is
// computed in New, so Pick is a few loads, a little arithmetic and at most one
// atomic add: no allocation, no lock, no blocking. The only mutable inputs are
// the backends' Stats, which the proxy updates as queries come and go.
package policy

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"sync/atomic"
)

// Stats are a backend's live counters, shared across routing snapshots (the proxy keeps one per backend for the life of the backend).
//
// Policies only read them. Reads are racy by design (one atomic load per
// counter, no snapshot of all backends at once): a decision on counters a
// few nanoseconds stale is as good as an exact one and needs no lock.
type Stats struct {
	Outstanding atomic.Int64 // queries sent and not yet answered/timed out
	LatencyUS   atomic.Int64 // EWMA of response latency in microseconds; 0 = unknown yet
}

// Backend is a policy's view of one usable backend (up and not drained) in a routing snapshot. Immutable except Stats.
type Backend struct {
	Name   string // stable identity; chashed builds its ring from it
	Weight int    // >= 1; a smaller value is treated as 1
	Order  int    // for firstavailable: lower first
	Stats  *Stats // must not be nil
}

// Policy picks a backend for a query. Built once per routing snapshot for one pool's usable backends; safe for concurrent use by many goroutines; Pick must not allocate, lock or block.
type Policy interface {
	// Pick returns an index into the backends given to New, or -1 when every backend is skipped (or there are none).
	// hash is the hash of the query's lowercased qname (see HashName); skip has bit (i % 64) set for each index i to avoid (already tried).
	//
	// With more than 64 backends, indexes i and i+64 share a bit, so
	// skipping one skips both: a retry then has fewer candidates than it
	// could, which is harmless, and a pool that large is unusual.
	Pick(hash uint64, skip uint64) int
}

// Policy names, as written in the config's pool.policy.
const (
	RoundRobin       = "roundrobin"
	WeightedRandom   = "wrandom"
	LeastOutstanding = "leastoutstanding"
	ConsistentHash   = "chashed"
	FirstAvailable   = "firstavailable"
	Latency          = "latency"
)

// ErrUnknownPolicy is returned by New for a name not in Names.
var ErrUnknownPolicy = errors.New("unknown policy")

// ErrNilBackend is returned by New when a backend or its Stats is nil: the
// proxy must give every backend its counters before routing to it.
var ErrNilBackend = errors.New("backend or its stats is nil")

// Names lists the valid policy names: roundrobin, wrandom, leastoutstanding, chashed, firstavailable, latency.
// It returns a fresh slice each call, so callers may keep or change it.
func Names() []string {
	return []string{RoundRobin, WeightedRandom, LeastOutstanding, ConsistentHash, FirstAvailable, Latency}
}

// New builds the named policy over backends. Unknown name: error listing valid names.
//
// New copies the slice (not the Backends), so the caller may reuse it; the
// indexes Pick returns are positions in it.
func New(name string, backends []*Backend) (Policy, error) {
	bs := make([]*Backend, len(backends))
	for i, b := range backends {
		if b == nil || b.Stats == nil {
			return nil, fmt.Errorf("policy %s: backend %d: %w", name, i, ErrNilBackend)
		}
		bs[i] = b
	}
	switch name {
	case RoundRobin:
		return newRoundRobin(bs), nil
	case WeightedRandom:
		return newWeightedRandom(bs), nil
	case LeastOutstanding:
		return newLeastOutstanding(bs), nil
	case ConsistentHash:
		return newConsistentHash(bs), nil
	case FirstAvailable:
		return newFirstAvailable(bs), nil
	case Latency:
		return newLatency(bs), nil
	}
	return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownPolicy, name, strings.Join(Names(), ", "))
}

// weight is b's weight as policies use it: at least 1, so a misconfigured 0
// still gets a share instead of dividing by zero or silently draining it
// (draining is the proxy's job: it leaves drained backends out of the snapshot).
func weight(b *Backend) uint64 {
	if b.Weight < 1 {
		return 1
	}
	return uint64(b.Weight)
}

// skipped reports whether the skip mask excludes index i.
func skipped(skip uint64, i int) bool {
	return skip&(1<<(uint(i)&63)) != 0
}

// allMask has a bit for each of n indexes, or every bit when n >= 64 (then
// every bit stands for at least one index).
func allMask(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<uint(n) - 1
}

// live counts the indexes in [0, n) that skip leaves.
func live(n int, skip uint64) int {
	if n <= 64 {
		return bits.OnesCount64(^skip & allMask(n))
	}
	m := 0
	for i := range n {
		if !skipped(skip, i) {
			m++
		}
	}
	return m
}

// nthLive returns the k-th (from 0) index in [0, n) that skip leaves, or -1.
func nthLive(n int, skip uint64, k int) int {
	for i := range n {
		if skipped(skip, i) {
			continue
		}
		if k == 0 {
			return i
		}
		k--
	}
	return -1
}

// outstanding is b's in-flight count, never negative: a racy decrement seen
// before its increment must not make a backend look better than idle.
func outstanding(s *Stats) int64 {
	return max(s.Outstanding.Load(), 0)
}
