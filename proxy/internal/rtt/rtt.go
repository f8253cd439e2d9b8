// Package rtt measures backends' round trips without a lock: a backend's
// smoothed RTT and deviation, hence its retransmission timeout (RFC 6298),
// and a pool's recent latency percentile with the budget that hedging
// spends. It knows durations only: no backend, query or clock of its own
// (callers pass nanoseconds on their clock).
package rtt

import (
	"math/bits"
	"sync/atomic"
)

// Estimator is one backend's smoothed round-trip time and its mean
// deviation, as TCP keeps them (RFC 6298: gains 1/8 and 1/4), from every
// valid answer that can be matched to one send. Updates are two atomic
// stores: two answers racing may lose one sample, which an average over
// thousands does not notice, and no query ever waits for a lock.
type Estimator struct {
	srtt   atomic.Int64 // nanoseconds; 0: no sample yet
	rttvar atomic.Int64
}

func (e *Estimator) Observe(rtt int64) {
	rtt = max(rtt, 1)
	s := e.srtt.Load()
	if s == 0 {
		e.srtt.Store(rtt)
		e.rttvar.Store(rtt / 2)
		return
	}
	d := s - rtt
	if d < 0 {
		d = -d
	}
	v := e.rttvar.Load()
	e.rttvar.Store(v + (d-v)/4)
	e.srtt.Store(s + (rtt-s)/8)
}

// SRTT is the smoothed round trip, nanoseconds; 0 before the first sample.
func (e *Estimator) SRTT() int64 { return e.srtt.Load() }

// Bound is the time in which the backend almost surely answers, SRTT plus
// four deviations; 0 before the first sample.
func (e *Estimator) Bound() int64 {
	s := e.srtt.Load()
	if s == 0 {
		return 0
	}
	return s + 4*e.rttvar.Load()
}

// RTO is the backend's retransmission timeout clamped to [floor, ceil];
// half the ceiling before the first sample (a backend that never answered
// is either new or dead: neither earns a short fuse).
func (e *Estimator) RTO(floor, ceil int64) int64 {
	s := e.srtt.Load()
	if s == 0 {
		return max(ceil/2, floor)
	}
	return min(max(s+4*e.rttvar.Load(), floor), ceil)
}

// Hist is a pool's recent answer latencies in log-linear buckets
// (four per power of two of microseconds), from which the hedging delay is
// read: one atomic add per answer, and a percentile computed a few times a
// second from the counts since the last computation.
type Hist struct {
	counts [latBuckets]atomic.Uint64
	// last is the counts at the previous computation (written by the one
	// goroutine that wins the computation's turn).
	last [latBuckets]uint64
	// turn is when the next computation is due (nanoseconds since the
	// proxy's epoch); a CAS on it elects the goroutine that does it.
	turn atomic.Int64
	// hedgeAfter is the percentile of the last window, in nanoseconds; 0
	// while there were too few answers to tell.
	hedgeAfter atomic.Int64
	// tokens is the hedging budget in thousandths of a query: each query
	// of the pool adds budget*10 (a budget of 5% adds 50), a hedge takes
	// 1000.
	tokens atomic.Int64
}

const (
	latBuckets = 4 * 40
	// latWindow is how often the hedging percentile is recomputed.
	latWindow = int64(250e6)
	// latMinSamples: fewer answers in a window say too little about a
	// tail; the previous percentile stays.
	latMinSamples = 50
	// HedgeBurst caps the hedging tokens a quiet pool saves up: enough for
	// a burst of slow answers, too few to double a load spike.
	HedgeBurst = 20 * 1000
)

// latBucket maps microseconds to a bucket: 4 per octave.
func latBucket(us uint64) int {
	if us < 4 {
		return int(us)
	}
	n := bits.Len64(us) // us in [2^(n-1), 2^n)
	sub := (us >> (n - 3)) & 3
	return min(4*(n-2)+int(sub), latBuckets-1)
}

// latBucketTop is the upper bound of a bucket, in microseconds.
func latBucketTop(b int) uint64 {
	if b < 4 {
		return uint64(b) + 1
	}
	n := b/4 + 2
	sub := uint64(b % 4)
	return (4 + sub + 1) << (n - 3)
}

func (h *Hist) Observe(rtt int64) {
	h.counts[latBucket(uint64(max(rtt, 0))/1000)].Add(1)
}

// Due says whether the percentile's turn to be recomputed has come, and if
// so claims it: of the goroutines asking at once, one is told yes, and it
// then calls Recompute.
func (h *Hist) Due(now int64) bool {
	t := h.turn.Load()
	return now >= t && h.turn.CompareAndSwap(t, now+latWindow)
}

// HedgeAfter is the hedging delay, nanoseconds: 0 while there were too few
// answers to tell.
func (h *Hist) HedgeAfter() int64 { return h.hedgeAfter.Load() }

// Recompute updates the hedging delay from the answers since the last
// time. The delay is the pool's percentile, but no more than fastest, the
// Bound of its fastest backend (0: none known): when one backend of two
// turns slow, half the pool's answers are slow and its percentile with
// them, yet a hedge to the other backend would still win.
func (h *Hist) Recompute(percentile float64, fastest int64) {
	var cur [latBuckets]uint64
	var total uint64
	for i := range cur {
		cur[i] = h.counts[i].Load() - h.last[i]
		total += cur[i]
	}
	if total < latMinSamples {
		return // keep counting into the next window
	}
	for i := range cur {
		h.last[i] += cur[i]
	}
	want := uint64(float64(total) * percentile / 100)
	var seen uint64
	for i, c := range cur {
		seen += c
		if seen > want {
			d := int64(latBucketTop(i)) * 1000
			if fastest > 0 {
				d = min(d, fastest)
			}
			h.hedgeAfter.Store(d)
			return
		}
	}
}

// Credit adds one query's share of the hedging budget.
func (h *Hist) Credit(milli int64) {
	if milli > 0 && h.tokens.Load() < HedgeBurst {
		h.tokens.Add(milli)
	}
}

// Refund gives back a hedge Spend took that was not sent.
func (h *Hist) Refund() { h.tokens.Add(1000) }

// Spend takes one hedge's worth of budget, if there is one.
func (h *Hist) Spend() bool {
	if h.tokens.Add(-1000) >= 0 {
		return true
	}
	h.tokens.Add(1000)
	return false
}
