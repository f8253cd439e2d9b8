package proxy

import (
	"encoding/binary"
	"net/netip"
	"sync"
)

// srcShards is how many locks a per-source table is split over: enough
// that workers on different sources rarely meet on one.
const srcShards = 64

// srcTable is a bounded table of per-source-prefix state, split into
// shards by a hash of the prefix, each with its own lock and its own least
// recently used order: when a shard is full, its least recently seen
// prefix is forgotten. Entries live in one slice per shard and are linked
// by index, so a steady state allocates nothing.
type srcTable[T any] struct {
	perShard int
	shards   [srcShards]srcShard[T]
}

type srcShard[T any] struct {
	mu   sync.Mutex
	idx  map[netip.Prefix]int32
	ents []srcEnt[T]
	// head is the most recently used entry, tail the least; -1 when empty.
	head, tail int32
	cap        int      // entries at most
	_          [32]byte // keep shards' locks off one cache line
}

type srcEnt[T any] struct {
	key        netip.Prefix
	prev, next int32
	val        T
}

// newSrcTable makes a table of at most about n entries.
func newSrcTable[T any](n int) *srcTable[T] {
	t := &srcTable[T]{perShard: max(1, (n+srcShards-1)/srcShards)}
	for i := range t.shards {
		t.shards[i].head, t.shards[i].tail, t.shards[i].cap = -1, -1, t.perShard
	}
	return t
}

// shard is the shard that holds key; lock its mu around get.
func (t *srcTable[T]) shard(key netip.Prefix) *srcShard[T] {
	return &t.shards[prefixHash(key)%srcShards]
}

// get returns key's value, made zero when key is new (fresh). The pointer
// is valid until the shard is unlocked. Called with mu held.
func (s *srcShard[T]) get(key netip.Prefix) (val *T, fresh bool) {
	if s.idx == nil {
		// Memory is taken when a shard is first used, and grows with
		// use up to cap.
		s.ents = make([]srcEnt[T], 0, min(s.cap, 256))
		s.idx = make(map[netip.Prefix]int32, min(s.cap, 256))
	}
	if i, ok := s.idx[key]; ok {
		s.touch(i)
		return &s.ents[i].val, false
	}
	var i int32
	if len(s.ents) < s.cap {
		s.ents = append(s.ents, srcEnt[T]{})
		i = int32(len(s.ents) - 1)
	} else {
		// Full: reuse the least recently used entry.
		i = s.tail
		s.unlink(i)
		delete(s.idx, s.ents[i].key)
	}
	s.ents[i] = srcEnt[T]{key: key, prev: -1, next: -1}
	s.idx[key] = i
	s.pushFront(i)
	return &s.ents[i].val, true
}

// len is the entries held; called with mu held.
func (s *srcShard[T]) len() int { return len(s.idx) }

func (s *srcShard[T]) touch(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

func (s *srcShard[T]) unlink(i int32) {
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

func (s *srcShard[T]) pushFront(i int32) {
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

// sourcePrefix is the prefix a source is measured by: its address cut to
// v4 or v6 bits.
func sourcePrefix(a netip.Addr, v4, v6 int) netip.Prefix {
	a = a.Unmap().WithZone("")
	bits := v6
	if a.Is4() {
		bits = v4
	}
	p, _ := a.Prefix(bits)
	return p
}

// prefixHash spreads prefixes over shards (splitmix64 of the address).
func prefixHash(p netip.Prefix) uint64 {
	b := p.Addr().As16()
	h := binary.LittleEndian.Uint64(b[:8])*0x9E3779B97F4A7C15 ^ binary.LittleEndian.Uint64(b[8:]) ^ uint64(p.Bits())
	h ^= h >> 30
	h *= 0xBF58476D1CE4E5B9
	h ^= h >> 27
	h *= 0x94D049BB133111EB
	return h ^ h>>31
}
