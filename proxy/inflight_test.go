package proxy

import (
	"reflect"
	"testing"
	"unsafe"
)

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
	t.Run("the timer wheel hands out slots when their tick has come", func(t *testing.T) {
		tab := newInflight(10)
		due := []int64{3 * wheelTick, 1 * wheelTick, 7 * wheelTick, 2*wheelTick + 1, 40 * wheelTick}
		var idx []int32
		for _, d := range due {
			j := tab.alloc()
			tab.slots[j].due = d
			tab.schedule(j)
			idx = append(idx, j)
		}
		tab.release(idx[2]) // a released slot leaves the wheel
		// got expires up to now and, as the shard does, puts back the
		// slots handed out before their time.
		got := func(now int64) []int64 {
			var out []int64
			for _, si := range tab.expire(now, nil) {
				if d := tab.slots[si].due; d <= now {
					out = append(out, d)
				} else {
					tab.schedule(si)
				}
			}
			return out
		}
		if g := got(2 * wheelTick); len(g) != 1 || g[0] != wheelTick {
			t.Errorf("at tick 2: %v, want the slot due at tick 1", g)
		}
		if g := got(3 * wheelTick); len(g) != 2 {
			t.Errorf("at tick 3: %v, want the slots due just after tick 2 and at tick 3", g)
		}
		if g := got(39 * wheelTick); len(g) != 0 {
			t.Errorf("at tick 39: %v, want nothing (the released slot must not come back)", g)
		}
		if g := got(40 * wheelTick); len(g) != 1 || g[0] != 40*wheelTick {
			t.Errorf("at tick 40: %v", g)
		}
	})
	t.Run("a slot due beyond the wheel waits in its last bucket", func(t *testing.T) {
		tab := newInflight(4)
		j := tab.alloc()
		tab.slots[j].due = 3 * wheelSize * wheelTick
		tab.schedule(j)
		var rounds int
		for now := int64(0); now <= 3*wheelSize*wheelTick; now += 10 * wheelTick {
			for _, si := range tab.expire(now, nil) {
				if tab.slots[si].due > now {
					tab.schedule(si)
					rounds++
				} else if si != j {
					t.Fatal("wrong slot")
				}
			}
		}
		if rounds < 2 {
			t.Errorf("parked %d times, want at least 2 for a slot three wheels ahead", rounds)
		}
	})
	t.Run("each lists every scheduled slot", func(t *testing.T) {
		tab := newInflight(8)
		for i := 0; i < 5; i++ {
			j := tab.alloc()
			tab.slots[j].due = int64(i) * 100 * wheelTick
			tab.schedule(j)
		}
		if n := len(tab.each(nil)); n != 5 {
			t.Errorf("each: %d slots, want 5", n)
		}
	})
}

func BenchmarkInflightAllocRelease(b *testing.B) {
	tab := newInflight(16384)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		idx := tab.alloc()
		tab.slots[idx].due = int64(i%100) * wheelTick
		tab.schedule(idx)
		tab.release(idx)
	}
}

type nopWaiter struct{}

func (nopWaiter) Answered([]byte) {}

// fillNonZero sets every field under v, unexported ones included, to a
// value other than its zero, so that a reset that forgets a field is seen.
func fillNonZero(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(1)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
	case reflect.Array:
		fillNonZero(t, v.Index(0))
	case reflect.Interface:
		v.Set(reflect.ValueOf(nopWaiter{}))
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			f := v.Field(i)
			fillNonZero(t, reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem())
		}
	default:
		t.Fatalf("fillNonZero: no case for %v", v.Type())
	}
}

// TestSlotReset: release empties every field of a slot but its query
// buffer, so a field added to slot and not to reset fails here.
func TestSlotReset(t *testing.T) {
	var s slot
	fillNonZero(t, reflect.ValueOf(&s).Elem())
	s.natt = 1 // only att[0] was filled: an attempt made
	buf := s.query[:0]
	s.reset()
	if want := (slot{query: buf}); !reflect.DeepEqual(s, want) {
		t.Errorf("after reset:\n%+v\nwant\n%+v", s, want)
	}
	if cap(s.query) != 1 {
		t.Error("reset dropped the query buffer")
	}
}
