package rtt

import (
	"testing"
	"time"
)

func TestRTTEstimator(t *testing.T) {
	floor, ceil := int64(20*time.Millisecond), int64(400*time.Millisecond)
	t.Run("unmeasured backend gets half the ceiling", func(t *testing.T) {
		var e Estimator
		if got := e.RTO(floor, ceil); got != ceil/2 {
			t.Errorf("rto = %v, want %v", time.Duration(got), time.Duration(ceil/2))
		}
	})
	t.Run("a fast steady backend sits at the floor", func(t *testing.T) {
		var e Estimator
		for range 100 {
			e.Observe(int64(200 * time.Microsecond))
		}
		if got := e.RTO(floor, ceil); got != floor {
			t.Errorf("rto = %v, want the floor", time.Duration(got))
		}
	})
	t.Run("a slow jittery backend gets srtt plus four deviations", func(t *testing.T) {
		var e Estimator
		for i := range 200 {
			e.Observe(int64(50*time.Millisecond) + int64(i%2)*int64(20*time.Millisecond))
		}
		got := time.Duration(e.RTO(floor, ceil))
		if got < 90*time.Millisecond || got > 130*time.Millisecond {
			t.Errorf("rto = %v, want about 60ms + 4x10ms", got)
		}
	})
	t.Run("the ceiling holds", func(t *testing.T) {
		var e Estimator
		e.Observe(int64(2 * time.Second))
		if got := e.RTO(floor, ceil); got != ceil {
			t.Errorf("rto = %v, want the ceiling", time.Duration(got))
		}
	})
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for us := uint64(0); us < 1<<24; us = us*9/8 + 1 {
		b := latBucket(us)
		if b < prev {
			t.Fatalf("bucket(%d) = %d < bucket of a smaller value %d", us, b, prev)
		}
		if top := latBucketTop(b); us >= top && b < latBuckets-1 {
			t.Fatalf("bucket %d of %dus has top %d", b, us, top)
		}
		prev = b
	}
}

func TestHedgeDelay(t *testing.T) {
	t.Run("the pool's percentile", func(t *testing.T) {
		var h Hist
		for i := range 1000 {
			rtt := int64(100 * time.Microsecond)
			if i%100 >= 90 { // a tenth take 10 ms
				rtt = int64(10 * time.Millisecond)
			}
			h.Observe(rtt)
		}
		h.Recompute(50, 0)
		if d := time.Duration(h.hedgeAfter.Load()); d < 100*time.Microsecond || d > 130*time.Microsecond {
			t.Errorf("p50 = %v, want about 100us", d)
		}
	})
	t.Run("capped by the fastest backend's RTO", func(t *testing.T) {
		var h Hist
		for range 1000 {
			h.Observe(int64(20 * time.Millisecond))
		}
		var fast, slow Estimator
		for range 50 {
			fast.Observe(int64(time.Millisecond))
			slow.Observe(int64(20 * time.Millisecond))
		}
		h.Recompute(95, min(fast.Bound(), slow.Bound()))
		if d := time.Duration(h.hedgeAfter.Load()); d > 2*time.Millisecond {
			t.Errorf("hedge after %v, want the fast backend's RTO (about 1ms)", d)
		}
	})
	t.Run("too few answers keep the old value", func(t *testing.T) {
		var h Hist
		h.hedgeAfter.Store(7)
		h.Observe(int64(time.Second))
		h.Recompute(95, 0)
		if h.hedgeAfter.Load() != 7 {
			t.Error("recomputed from one answer")
		}
	})
	t.Run("one recomputation per window", func(t *testing.T) {
		var h Hist
		if !h.Due(0) || h.Due(1) || h.Due(latWindow-1) {
			t.Error("more than one turn in the first window")
		}
		if !h.Due(latWindow) {
			t.Error("no turn once the window passed")
		}
	})
	t.Run("the budget refuses past its share", func(t *testing.T) {
		var h Hist
		for range 1000 {
			h.Credit(50) // 5%
		}
		n := 0
		for h.Spend() {
			n++
		}
		if n != 20 {
			t.Errorf("%d hedges for 1000 queries at 5%%, want 20 (the burst cap)", n)
		}
	})
}
