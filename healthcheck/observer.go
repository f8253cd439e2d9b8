package healthcheck

import (
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/state"
)

// windowBuckets is how many buckets a traffic window is cut into: the
// window slides in steps of a tenth, good enough for a trigger, and the
// memory per backend stays fixed whatever the window's length.
const windowBuckets = 10

// observer counts a backend's live-query outcomes over a sliding window and
// raises trig when the failure ratio passes the threshold. Observe is on the
// proxy's hot path, called from many goroutines: it uses atomics only, never
// locks, blocks or allocates.
type observer struct {
	win atomic.Pointer[window] // nil until the backend is configured
	// trig is raised by Observe and lowered by the scheduler when the
	// probe it asked for ends; while raised, Observe does not evaluate
	// or wake anyone, so a failure storm costs one wake-up per probe.
	trig atomic.Bool
	wake chan<- struct{}
}

// window is one generation of counts with the knobs they are judged by. A
// reload or a backend coming back up swaps in a fresh one.
type window struct {
	epoch      time.Time
	width      int64 // nanoseconds per bucket
	ratio      float64
	minSamples uint64
	b          [windowBuckets]bucket
}

// bucket counts one slot's outcomes. Both counts share one word (failures
// in the high half, all outcomes in the low) so recording is one atomic add.
type bucket struct {
	slot atomic.Int64
	n    atomic.Uint64
}

const (
	one     = 1
	oneFail = 1<<32 | 1
)

// Observe records one outcome of a live query. rttMicros is not used: the
// proxy tracks latency itself; the checker cares whether answers come.
func (o *observer) Observe(out state.Outcome, _ int64) {
	w := o.win.Load()
	if w == nil {
		return
	}
	o.record(w, out.Failure(), int64(time.Since(w.epoch))/w.width)
}

// record is Observe at a given slot, so tests can move time.
func (o *observer) record(w *window, failed bool, slot int64) {
	b := &w.b[slot%windowBuckets]
	// The first outcome of a new slot recycles the bucket. Two goroutines
	// racing here may lose an outcome or two at the boundary, which a
	// ratio over hundreds does not notice; locking would cost every query.
	if s := b.slot.Load(); s < slot && b.slot.CompareAndSwap(s, slot) {
		b.n.Store(0)
	}
	if !failed {
		b.n.Add(one)
		return
	}
	b.n.Add(oneFail)
	if o.trig.Load() || !w.tripped(slot) {
		return
	}
	if o.trig.CompareAndSwap(false, true) {
		select {
		case o.wake <- struct{}{}:
		default: // a wake-up is already pending; it will see trig
		}
	}
}

// tripped reports whether the window ending at slot has enough samples and
// a failure ratio at or above the threshold.
func (w *window) tripped(slot int64) bool {
	total, failed := w.counts(slot)
	return total >= w.minSamples && float64(failed) >= w.ratio*float64(total)
}

// counts sums the buckets whose slot lies within the window ending at slot.
func (w *window) counts(slot int64) (total, failed uint64) {
	for i := range w.b {
		b := &w.b[i]
		if d := slot - b.slot.Load(); d >= 0 && d < windowBuckets {
			n := b.n.Load()
			total += n & 0xFFFFFFFF
			failed += n >> 32
		}
	}
	return total, failed
}

func newWindow(set *settings, epoch time.Time) *window {
	return freshWindow(epoch, max(int64(set.window)/windowBuckets, 1), set.ratio, set.minSamples)
}

func freshWindow(epoch time.Time, width int64, ratio float64, minSamples uint64) *window {
	return &window{epoch: epoch, width: width, ratio: ratio, minSamples: minSamples}
}

// configure starts a fresh window with set's knobs.
func (o *observer) configure(set *settings, epoch time.Time) {
	o.win.Store(newWindow(set, epoch))
}

// reset forgets the counts, keeping the knobs: failures from before an
// outage must not trigger probes once the backend is back.
func (o *observer) reset() {
	if w := o.win.Load(); w != nil {
		o.win.Store(freshWindow(w.epoch, w.width, w.ratio, w.minSamples))
	}
}
