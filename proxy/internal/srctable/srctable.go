// Package srctable is a bounded, sharded table of per-source-prefix state
// (rate limiter arrival times, dynamic block windows): a spoofed flood from
// many sources costs memory only up to the bound, and a steady state
// allocates nothing.
//
// It is a leaf shared by proxy/rules and proxy/dynblock: it knows no
// config, packet or counter, and never imports proxy.
package srctable

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// Shards is how many locks a table is split over: enough that workers on
// different sources rarely meet on one.
const Shards = 64

// Table is a bounded table of per-source-prefix state, split into
// shards by a hash of the prefix, each with its own lock and its own least
// recently used order: when a shard is full, its least recently seen
// prefix is forgotten. Entries live in one slice per shard and are linked
// by index, so a steady state allocates nothing.
type Table[T any] struct {
	perShard int
	shards   [Shards]Shard[T]
}

// Shard is one lock's part of a Table: Lock it around Get.
type Shard[T any] struct {
	mu   sync.Mutex
	idx  map[netip.Prefix]int32
	ents []entry[T]
	// head is the most recently used entry, tail the least; -1 when empty.
	head, tail int32
	cap        int      // entries at most
	_          [32]byte // keep shards' locks off one cache line
}

type entry[T any] struct {
	key        netip.Prefix
	prev, next int32
	val        T
}

// New makes a table of at most about n entries.
func New[T any](n int) *Table[T] {
	t := &Table[T]{perShard: max(1, (n+Shards-1)/Shards)}
	for i := range t.shards {
		t.shards[i].head, t.shards[i].tail, t.shards[i].cap = -1, -1, t.perShard
	}
	return t
}

// Shard is the shard that holds key.
func (t *Table[T]) Shard(key netip.Prefix) *Shard[T] {
	return &t.shards[PrefixHash(key)%Shards]
}

// Lock locks the shard.
func (s *Shard[T]) Lock() { s.mu.Lock() }

// Unlock unlocks the shard; pointers Get returned are invalid after it.
func (s *Shard[T]) Unlock() { s.mu.Unlock() }

// Get returns key's value, made zero when key is new (fresh). The pointer
// is valid until the shard is unlocked. Called with the shard locked.
func (s *Shard[T]) Get(key netip.Prefix) (val *T, fresh bool) {
	if s.idx == nil {
		// Memory is taken when a shard is first used, and grows with
		// use up to cap.
		s.ents = make([]entry[T], 0, min(s.cap, 256))
		s.idx = make(map[netip.Prefix]int32, min(s.cap, 256))
	}
	if i, ok := s.idx[key]; ok {
		s.touch(i)
		return &s.ents[i].val, false
	}
	var i int32
	if len(s.ents) < s.cap {
		s.ents = append(s.ents, entry[T]{})
		i = int32(len(s.ents) - 1)
	} else {
		// Full: reuse the least recently used entry.
		i = s.tail
		s.unlink(i)
		delete(s.idx, s.ents[i].key)
	}
	s.ents[i] = entry[T]{key: key, prev: -1, next: -1}
	s.idx[key] = i
	s.pushFront(i)
	return &s.ents[i].val, true
}

// len is the entries held; called with mu held.
func (s *Shard[T]) len() int { return len(s.idx) }

func (s *Shard[T]) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

func (s *Shard[T]) unlink(i int32) {
	e := &s.ents[i]
	if e.prev >= 0 {
		s.ents[e.prev].next = e.next
	} else {
		s.head = e.next
	}
	if e.next >= 0 {
		s.ents[e.next].prev = e.prev
	} else {
		s.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (s *Shard[T]) pushFront(i int32) {
	e := &s.ents[i]
	e.prev, e.next = -1, s.head
	if s.head >= 0 {
		s.ents[s.head].prev = i
	}
	s.head = i
	if s.tail < 0 {
		s.tail = i
	}
}

// SourcePrefix is the prefix a source is measured by: its address cut to
// v4 or v6 bits.
func SourcePrefix(a netip.Addr, v4, v6 int) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, _ := a.Prefix(bits)
	return p
}

// PrefixHash spreads prefixes over shards (splitmix64 of the address).
func PrefixHash(p netip.Prefix) uint64 {
	b := p.Addr().As16()
	h := binary.LittleEndian.Uint64(b[:8])*0x9E3779B97F4A7C15 ^ binary.LittleEndian.Uint64(b[8:]) ^ uint64(p.Bits())
	h ^= h >> 30
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 27
	h *= 0x94D049BB133111EB
	return h ^ h>>31
}
