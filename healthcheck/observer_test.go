package healthcheck

import (
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/state"
)

func testObserver(ratio float64, minSamples uint64) (*observer, *window, chan struct{}) {
	wake := make(chan struct{}, 1)
	o := &observer{wake: wake}
	w := freshWindow(time.Now(), int64(time.Second), ratio, minSamples)
	o.win.Store(w)
	return o, w, wake
}

func TestObserverWindow(t *testing.T) {
	type ev struct {
		slot   int64
		failed bool
		n      int
	}
	tests := []struct {
		name      string
		ratio     float64
		min       uint64
		events    []ev
		wantTrig  bool
		wantTotal uint64 // counted in the window ending at the last event
	}{
		{"failures below min_samples do not trigger", 0.3, 10,
			[]ev{{0, true, 9}}, false, 9},
		{"the ratio reached with enough samples triggers", 0.3, 10,
			[]ev{{0, false, 7}, {1, true, 3}}, true, 10},
		{"a ratio just under the threshold does not trigger", 0.3, 10,
			[]ev{{0, false, 71}, {1, true, 29}}, false, 100},
		{"failures that slid out of the window are forgotten", 0.5, 10,
			[]ev{{0, false, 10}, {3, false, 10}, {12, true, 5}, {12, false, 5}}, false, 20},
		{"a recycled bucket starts from zero", 0.5, 10,
			[]ev{{0, false, 100}, {10, true, 10}}, true, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, w, wake := testObserver(tt.ratio, tt.min)
			var last int64
			for _, e := range tt.events {
				for range e.n {
					o.record(w, e.failed, e.slot)
				}
				last = e.slot
			}
			if o.trig.Load() != tt.wantTrig {
				t.Errorf("trig = %v, want %v", o.trig.Load(), tt.wantTrig)
			}
			if woke := len(wake) == 1; woke != tt.wantTrig {
				t.Errorf("woke = %v, want %v", woke, tt.wantTrig)
			}
			if total, _ := w.counts(last); total != tt.wantTotal {
				t.Errorf("counted %d outcomes in the window, want %d", total, tt.wantTotal)
			}
		})
	}
}

func TestObserverTriggersOnceUntilRearmed(t *testing.T) {
	o, w, wake := testObserver(0.5, 1)
	for range 100 {
		o.record(w, true, 0)
	}
	if len(wake) != 1 {
		t.Fatalf("wake-ups pending = %d, want 1", len(wake))
	}
	<-wake
	for range 100 {
		o.record(w, true, 0)
	}
	if len(wake) != 0 {
		t.Fatal("a raised trigger woke the scheduler again")
	}
	o.trig.Store(false) // the probe ended
	o.record(w, true, 0)
	if len(wake) != 1 {
		t.Fatal("a re-armed observer did not trigger again")
	}
}

func TestObserveDoesNotAllocate(t *testing.T) {
	o, _, wake := testObserver(0.3, 10)
	for _, out := range []state.Outcome{state.OutcomeAnswer, state.OutcomeTimeout, state.OutcomeServFail} {
		if n := testing.AllocsPerRun(1000, func() { o.Observe(out, 250) }); n != 0 {
			t.Errorf("Observe(%s) allocates %.1f times per call", out, n)
		}
		// Also with the trigger being raised and the wake-up sent.
		o.trig.Store(false)
		if n := testing.AllocsPerRun(1000, func() {
			o.trig.Store(false)
			select {
			case <-wake:
			default:
			}
			o.Observe(state.OutcomeTimeout, 0)
		}); n != 0 {
			t.Errorf("a triggering Observe allocates %.1f times per call", n)
		}
	}
	var unconfigured observer
	if n := testing.AllocsPerRun(1000, func() { unconfigured.Observe(state.OutcomeTimeout, 0) }); n != 0 {
		t.Errorf("Observe before configuration allocates %.1f times per call", n)
	}
}

// TestObserveConcurrently is for -race: proxy workers observe while the
// checker swaps windows and consumes triggers.
func TestObserveConcurrently(t *testing.T) {
	const workers, perWorker = 8, 20000
	o, _, wake := testObserver(0.3, 10)
	set := &settings{ratio: 0.3, window: 2 * time.Second, minSamples: 10}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // the checker
		for {
			select {
			case <-stop:
				return
			case <-wake:
				o.trig.Store(false)
				o.reset()
			default:
				o.configure(set, time.Now())
			}
		}
	})
	var obsWG sync.WaitGroup
	for w := range workers {
		obsWG.Go(func() {
			for i := range perWorker {
				out := state.OutcomeAnswer
				if (i+w)%3 == 0 {
					out = state.OutcomeTimeout
				}
				o.Observe(out, int64(i))
			}
		})
	}
	obsWG.Wait()
	close(stop)
	wg.Wait()
}

func BenchmarkObserve(b *testing.B) {
	o, _, _ := testObserver(0.3, 10)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			o.Observe(state.OutcomeAnswer, 100)
		}
	})
}
