// Package ring is the bounded queue between the query path and an
// observer's background goroutine (the query log's writer, the top
// tables' aggregator): many producers that never wait and never allocate,
// one consumer.
//
// It is a leaf: it imports nothing of anyfront and knows nothing of DNS.
package ring

import (
	"math/bits"
	"sync/atomic"
)

// Ring is a bounded queue from many producers (the query path's readers)
// to one consumer (a background goroutine), after Dmitry Vyukov's bounded
// MPMC queue: each slot carries a sequence number saying whose turn it is,
// so producers claim slots with one compare-and-swap and never wait, and
// nothing allocates once the slots exist. A full ring refuses the entry:
// the caller counts the drop, the query path never blocks on its observers.
type Ring[T any] struct {
	slots []slot[T]
	mask  uint64
	_     [64]byte // keep the producers' counter off the slots' cache line
	enq   atomic.Uint64
	_     [56]byte
	deq   uint64 // the consumer's alone
}

type slot[T any] struct {
	seq atomic.Uint64
	v   T
}

// New makes a ring of at least n slots (rounded up to a power of two),
// each initialised by init so that its buffers exist before traffic does.
func New[T any](n int, init func(*T)) *Ring[T] {
	size := uint64(1) << bits.Len64(uint64(max(n, 2)-1))
	r := &Ring[T]{slots: make([]slot[T], size), mask: size - 1}
	for i := range r.slots {
		r.slots[i].seq.Store(uint64(i))
		if init != nil {
			init(&r.slots[i].v)
		}
	}
	return r
}

// Reserve claims the next slot for a producer, which fills it and then
// calls Publish with the returned position. ok is false when the ring is
// full.
func (r *Ring[T]) Reserve() (v *T, pos uint64, ok bool) {
	pos = r.enq.Load()
	for {
		s := &r.slots[pos&r.mask]
		switch d := int64(s.seq.Load() - pos); {
		case d == 0:
			if r.enq.CompareAndSwap(pos, pos+1) {
				return &s.v, pos, true
			}
			pos = r.enq.Load()
		case d < 0:
			return nil, 0, false // the consumer has not freed this slot yet
		default:
			pos = r.enq.Load() // another producer took it: try the next
		}
	}
}

// Publish hands the slot reserved at pos to the consumer.
func (r *Ring[T]) Publish(pos uint64) { r.slots[pos&r.mask].seq.Store(pos + 1) }

// Next returns the oldest published entry, or nil when there is none. The
// consumer must call Release before the next call to Next.
func (r *Ring[T]) Next() *T {
	s := &r.slots[r.deq&r.mask]
	if s.seq.Load() != r.deq+1 {
		return nil
	}
	return &s.v
}

// Release gives the slot returned by Next back to the producers.
func (r *Ring[T]) Release() {
	r.slots[r.deq&r.mask].seq.Store(r.deq + r.mask + 1)
	r.deq++
}
