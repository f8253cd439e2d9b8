package proxy

import "testing"

func TestInflight(t *testing.T) {
	t.Run("a full table refuses more and frees on release", func(t *testing.T) {
		tab := newInflight(100)
		var got []int32
		for i := 0; i < 100; i++ {
			idx := tab.alloc()
			if idx < 0 {
				t.Fatalf("alloc %d failed", i)
			}
			got = append(got, idx)
		}
		if tab.alloc() != -1 {
			t.Fatal("alloc past the bound succeeded")
		}
		tab.release(got[50])
		if tab.alloc() < 0 {
			t.Fatal("alloc after release failed")
		}
		if tab.n != 100 {
			t.Errorf("n = %d", tab.n)
		}
	})
	t.Run("IDs are unique and not sequential", func(t *testing.T) {
		tab := newInflight(60000)
		seen := map[uint16]bool{}
		sequential := 0
		var prev uint16
		for i := 0; i < 60000; i++ {
			idx := tab.alloc()
			if idx < 0 {
				t.Fatalf("alloc %d failed", i)
			}
			id := tab.slots[idx].id
			if seen[id] {
				t.Fatalf("ID %d handed out twice", id)
			}
			seen[id] = true
			if tab.lookup(id) != idx {
				t.Fatalf("lookup(%d) != %d", id, idx)
			}
			if i > 0 && id == prev+1 {
				sequential++
			}
			prev = id
		}
		// Near-full tables fall back to a short linear walk; a predictable
		// sequence would make almost every ID its predecessor plus one.
		if sequential > 6000 {
			t.Errorf("%d of 60000 IDs followed their predecessor", sequential)
		}
	})
	t.Run("the deadline list keeps order across unlink and release", func(t *testing.T) {
		tab := newInflight(10)
		var idx []int32
		for i := 0; i < 5; i++ {
			j := tab.alloc()
			tab.slots[j].deadline = int64(i)
			tab.pushBack(j)
			idx = append(idx, j)
		}
		tailID := tab.slots[idx[4]].id
		tab.release(idx[0]) // head
		tab.release(idx[2]) // middle
		tab.release(idx[4]) // tail
		var order []int64
		for si := tab.head; si >= 0; si = tab.slots[si].next {
			order = append(order, tab.slots[si].deadline)
		}
		if len(order) != 2 || order[0] != 1 || order[1] != 3 {
			t.Errorf("order = %v, want [1 3]", order)
		}
		if tab.lookup(tailID) != -1 {
			t.Error("released ID still maps to a slot")
		}
	})
}

func BenchmarkInflightAllocRelease(b *testing.B) {
	tab := newInflight(16384)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		idx := tab.alloc()
		tab.pushBack(idx)
		tab.release(idx)
	}
}
