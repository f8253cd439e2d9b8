package policy

import (
	"slices"
	"testing"
)

// owners maps names 0..n-1 to the name of the backend chashed picks for them.
func owners(t *testing.T, bs []*Backend, n int) []string {
	t.Helper()
	p := mustNew(t, ConsistentHash, bs)
	out := make([]string, n)
	for i := range out {
		out[i] = bs[p.Pick(nameHash(i), 0)].Name
	}
	return out
}

func TestConsistentHashAffinity(t *testing.T) {
	const names = 10000
	t.Run("same name goes to the same backend", func(t *testing.T) {
		p := mustNew(t, ConsistentHash, uniform(5))
		for i := range 1000 {
			if a, b := p.Pick(nameHash(i), 0), p.Pick(nameHash(i), 0); a != b {
				t.Fatalf("name %d went to %d then %d", i, a, b)
			}
		}
	})
	t.Run("mapping depends on backend names, not their order", func(t *testing.T) {
		bs := uniform(4)
		rev := slices.Clone(bs)
		slices.Reverse(rev)
		if !slices.Equal(owners(t, bs, 2000), owners(t, rev, 2000)) {
			t.Error("reversing the backend list changed which backend names go to")
		}
	})
	t.Run("equal weights spread names evenly", func(t *testing.T) {
		p := mustNew(t, ConsistentHash, uniform(4))
		c := make([]int, 4)
		for i := range names {
			c[p.Pick(nameHash(i), 0)]++
		}
		assertShares(t, c, []float64{1, 1, 1, 1}, 0.07)
	})
	t.Run("weight 3 backend gets three times the names", func(t *testing.T) {
		p := mustNew(t, ConsistentHash, newBackends(spec{weight: 1}, spec{weight: 3}))
		c := make([]int, 2)
		for i := range names {
			c[p.Pick(nameHash(i), 0)]++
		}
		assertShares(t, c, []float64{1, 3}, 0.06)
	})
	t.Run("adding a 4th backend moves about a quarter of names, all to it", func(t *testing.T) {
		four := uniform(4)
		before, after := owners(t, four[:3], names), owners(t, four, names)
		moved := 0
		for i := range names {
			if before[i] == after[i] {
				continue
			}
			moved++
			if after[i] != four[3].Name {
				t.Fatalf("name %d moved from %s to %s, an old backend", i, before[i], after[i])
			}
		}
		if frac := float64(moved) / names; frac < 0.15 || frac > 0.35 {
			t.Errorf("%.1f%% of names moved, want 15%%..35%%", 100*frac)
		}
	})
	t.Run("removing a backend moves only its names", func(t *testing.T) {
		four := uniform(4)
		gone := four[2].Name
		before := owners(t, four, names)
		after := owners(t, slices.Delete(slices.Clone(four), 2, 3), names)
		for i := range names {
			if before[i] != gone && before[i] != after[i] {
				t.Fatalf("name %d moved from %s to %s though %s was removed", i, before[i], after[i], gone)
			}
		}
	})
	t.Run("huge weights are capped without losing proportions", func(t *testing.T) {
		bs := newBackends(spec{weight: 10000}, spec{weight: 30000})
		p := mustNew(t, ConsistentHash, bs).(*consistentHash)
		if len(p.points) > maxRingPoints {
			t.Errorf("ring has %d points, want at most %d", len(p.points), maxRingPoints)
		}
		c := make([]int, 2)
		for i := range names {
			c[p.Pick(nameHash(i), 0)]++
		}
		assertShares(t, c, []float64{1, 3}, 0.03)
	})
}

func TestConsistentHashBoundedLoad(t *testing.T) {
	const names = 5000
	t.Run("hot backend sheds its names to the next on the ring", func(t *testing.T) {
		bs := uniform(4)
		p := mustNew(t, ConsistentHash, bs)
		idle := make([]int, names)
		for i := range names {
			idle[i] = p.Pick(nameHash(i), 0)
		}
		bs[1].Stats.Outstanding.Store(1000)
		shed := 0
		for i := range names {
			got := p.Pick(nameHash(i), 0)
			switch {
			case idle[i] != 1 && got != idle[i]:
				t.Fatalf("name %d moved from cool backend %d to %d", i, idle[i], got)
			case idle[i] == 1:
				// Its next on the ring is what a retry that skips the hot one gets.
				if want := p.Pick(nameHash(i), 1<<1); got != want {
					t.Fatalf("name %d of the hot backend went to %d, want its next on the ring %d", i, got, want)
				}
				shed++
			}
		}
		if shed == 0 {
			t.Fatal("hot backend owned no names; test is vacuous")
		}
	})
	t.Run("evenly loaded backends keep their names", func(t *testing.T) {
		bs := uniform(4)
		p := mustNew(t, ConsistentHash, bs)
		idle := make([]int, names)
		for i := range names {
			idle[i] = p.Pick(nameHash(i), 0)
		}
		for _, b := range bs {
			b.Stats.Outstanding.Store(50)
		}
		for i := range names {
			if got := p.Pick(nameHash(i), 0); got != idle[i] {
				t.Fatalf("name %d moved from %d to %d under even load", i, idle[i], got)
			}
		}
	})
	// The bound for backend i is ceil(1.25 × (T+1) × w_i / W).
	tests := []struct {
		name  string
		bs    []*Backend
		sheds bool // whether names of backend 0 go elsewhere
	}{
		// T=1: ceil(1.25×2/2) = 2 >= 1+1.
		{"backend at its bound keeps its names", newBackends(spec{out: 1}, spec{}), false},
		// T=2: ceil(1.25×3/2) = 2 < 2+1.
		{"backend one over its bound sheds", newBackends(spec{out: 2}, spec{}), true},
		// T=4: ceil(1.25×5×3/4) = 5 >= 4+1; unweighted it would be ceil(1.25×5/2) = 4.
		{"heavier backend may carry proportionally more", newBackends(spec{weight: 3, out: 4}, spec{weight: 1}), false},
		// T=14: ceil(1.25×15×3/4) = 15 >= 14+1.
		{"heavier backend at its weighted bound keeps its names", newBackends(spec{weight: 3, out: 14}, spec{weight: 1}), false},
		// T=15: ceil(1.25×16×3/4) = 15 < 15+1.
		{"heavier backend sheds past its weighted bound", newBackends(spec{weight: 3, out: 15}, spec{weight: 1}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, ConsistentHash, tt.bs)
			owned := 0
			for i := range names {
				got := p.Pick(nameHash(i), 0)
				owned += 1 - got
			}
			if tt.sheds && owned != 0 {
				t.Errorf("backend 0 still got %d names, want none", owned)
			}
			if !tt.sheds && owned == 0 {
				t.Error("backend 0 got no names, want its share")
			}
		})
	}
	t.Run("when all candidates are over bound the name stays with its owner", func(t *testing.T) {
		// Backend 0 is skipped (tried) and idle; 1 and 2 are both over
		// ceil(1.25×101/3) = 43, so spreading further would relieve no one.
		bs := newBackends(spec{}, spec{out: 50}, spec{out: 50})
		p := mustNew(t, ConsistentHash, bs)
		ref := mustNew(t, ConsistentHash, uniform(3))
		for i := range names {
			if got, want := p.Pick(nameHash(i), 0b001), ref.Pick(nameHash(i), 0b001); got != want {
				t.Fatalf("name %d went to %d, want its owner among the rest %d", i, got, want)
			}
		}
	})
}
