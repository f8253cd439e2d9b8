package ring

import (
	"sync"
	"testing"
)

func TestRing(t *testing.T) {
	t.Run("a full ring refuses, and hands entries over in order", func(t *testing.T) {
		r := New[int](3, nil) // rounded up to 4
		for i := range 4 {
			v, pos, ok := r.Reserve()
			if !ok {
				t.Fatalf("reserve %d refused", i)
			}
			*v = i
			r.Publish(pos)
		}
		if _, _, ok := r.Reserve(); ok {
			t.Fatal("a full ring took a fifth entry")
		}
		for i := range 4 {
			v := r.Next()
			if v == nil || *v != i {
				t.Fatalf("entry %d: got %v", i, v)
			}
			r.Release()
		}
		if r.Next() != nil {
			t.Fatal("an empty ring gave an entry")
		}
		if _, _, ok := r.Reserve(); !ok {
			t.Fatal("a drained ring refused")
		}
	})
	t.Run("concurrent producers lose nothing the ring accepted", func(t *testing.T) {
		r := New[int](64, nil)
		const producers, each = 8, 5000
		var accepted sync.Map
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range each {
					if v, pos, ok := r.Reserve(); ok {
						*v = p*each + i
						accepted.Store(p*each+i, true)
						r.Publish(pos)
					}
				}
			})
		}
		got := map[int]bool{}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		drain := func() {
			for v := r.Next(); v != nil; v = r.Next() {
				if got[*v] {
					t.Errorf("entry %d delivered twice", *v)
				}
				got[*v] = true
				r.Release()
			}
		}
	loop:
		for {
			select {
			case <-done:
				break loop
			default:
				drain()
			}
		}
		drain()
		n := 0
		accepted.Range(func(k, _ any) bool {
			n++
			if !got[k.(int)] {
				t.Errorf("accepted entry %d never delivered", k)
			}
			return true
		})
		if n != len(got) || n == 0 {
			t.Errorf("accepted %d, delivered %d", n, len(got))
		}
	})
}
