package policy

import (
	"math"
	"slices"
	"testing"
)

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name  string
		bs    []*Backend
		skip  uint64
		picks int
		want  []int
	}{
		{"spreads evenly ignoring weight", newBackends(spec{weight: 1}, spec{weight: 5}, spec{weight: 2}, spec{weight: 9}), 0, 4000, []int{1000, 1000, 1000, 1000}},
		{"skipped backend's turn goes to the next", uniform(4), 0b0010, 4000, []int{1000, 0, 2000, 1000}},
		{"skipping the last wraps to the first", uniform(3), 0b100, 3000, []int{2000, 1000, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, RoundRobin, tt.bs)
			if got := tally(t, p, len(tt.bs), tt.picks, tt.skip); !slices.Equal(got, tt.want) {
				t.Errorf("picks = %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("consecutive picks rotate", func(t *testing.T) {
		p := mustNew(t, RoundRobin, uniform(3))
		var got []int
		for range 6 {
			got = append(got, p.Pick(0, 0))
		}
		if want := []int{0, 1, 2, 0, 1, 2}; !slices.Equal(got, want) {
			t.Errorf("picks = %v, want %v", got, want)
		}
	})
}

// assertShares checks that counts are split as weights within tol (absolute share).
func assertShares(t *testing.T, counts []int, weights []float64, tol float64) {
	t.Helper()
	var n, w float64
	for i := range counts {
		n += float64(counts[i])
		w += weights[i]
	}
	for i := range counts {
		got, want := float64(counts[i])/n, weights[i]/w
		if math.Abs(got-want) > tol {
			t.Errorf("backend %d got %.3f of picks, want %.3f±%.3f (counts %v)", i, got, want, tol, counts)
		}
	}
}

func TestWeightedRandom(t *testing.T) {
	tests := []struct {
		name    string
		bs      []*Backend
		skip    uint64
		weights []float64 // expected share, by index
	}{
		{"weights 1:3 give a quarter and three quarters", newBackends(spec{weight: 1}, spec{weight: 3}), 0, []float64{1, 3}},
		{"equal weights spread evenly", uniform(4), 0, []float64{1, 1, 1, 1}},
		{"weights below 1 count as 1", []*Backend{{Name: "a", Weight: 0, Stats: &Stats{}}, {Name: "b", Weight: -4, Stats: &Stats{}}}, 0, []float64{1, 1}},
		{"retry is weighted among the rest", newBackends(spec{weight: 1}, spec{weight: 6}, spec{weight: 3}), 0b010, []float64{1, 0, 3}},
		{"skipping the lightest keeps the others' ratio", newBackends(spec{weight: 1}, spec{weight: 2}, spec{weight: 6}), 0b001, []float64{0, 2, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, WeightedRandom, tt.bs)
			assertShares(t, tally(t, p, len(tt.bs), 200000, tt.skip), tt.weights, 0.01)
		})
	}
}

func TestLeastOutstanding(t *testing.T) {
	tests := []struct {
		name string
		bs   []*Backend
		skip uint64
		want int
	}{
		{"picks the least loaded", newBackends(spec{out: 7}, spec{out: 3}, spec{out: 9}), 0, 1},
		{"equal load goes to the lower order", newBackends(spec{out: 2, order: 5}, spec{out: 2, order: 1}, spec{out: 4, order: 0}), 0, 1},
		{"equal load and order goes to the lower latency", newBackends(spec{out: 2, latUS: 900}, spec{out: 2, latUS: 300}, spec{out: 2, latUS: 600}), 0, 1},
		{"unknown latency wins a tie so it gets measured", newBackends(spec{latUS: 300}, spec{latUS: 0}), 0, 1},
		{"load matters more than order", newBackends(spec{out: 1, order: 0}, spec{out: 0, order: 9}), 0, 1},
		{"full tie goes to the first", uniform(3), 0, 0},
		{"skipped least loaded yields the next least", newBackends(spec{out: 7}, spec{out: 3}, spec{out: 5}), 0b010, 2},
		{"negative count from a racy decrement counts as idle", newBackends(spec{out: -3, order: 1}, spec{out: 0, order: 0}), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, LeastOutstanding, tt.bs)
			if got := p.Pick(0, tt.skip); got != tt.want {
				t.Errorf("Pick = %d, want %d", got, tt.want)
			}
		})
	}
	t.Run("follows load as it changes", func(t *testing.T) {
		bs := uniform(3)
		p := mustNew(t, LeastOutstanding, bs)
		// Each pick becomes outstanding: the picks must fill backends evenly.
		for range 300 {
			bs[p.Pick(0, 0)].Stats.Outstanding.Add(1)
		}
		for i, b := range bs {
			if got := b.Stats.Outstanding.Load(); got != 100 {
				t.Errorf("backend %d has %d outstanding, want 100", i, got)
			}
		}
	})
}

func TestFirstAvailable(t *testing.T) {
	bs := newBackends(spec{order: 3}, spec{order: 1}, spec{order: 2}, spec{order: 1})
	tests := []struct {
		name string
		skip uint64
		want int
	}{
		{"picks the lowest order", 0, 1},
		{"equal orders keep config order", 0, 1},
		{"falls to the next order when skipped", 0b1010, 2},
		{"falls to an equal order when skipped", 0b0010, 3},
		{"falls to the last one", 0b1110, 0},
	}
	p := mustNew(t, FirstAvailable, bs)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for h := range 100 {
				if got := p.Pick(nameHash(h), tt.skip); got != tt.want {
					t.Fatalf("Pick(skip %04b) = %d, want %d", tt.skip, got, tt.want)
				}
			}
		})
	}
	t.Run("ignores load", func(t *testing.T) {
		bs := newBackends(spec{order: 0, out: 1000}, spec{order: 1})
		if got := mustNew(t, FirstAvailable, bs).Pick(0, 0); got != 0 {
			t.Errorf("Pick = %d, want 0", got)
		}
	})
}
