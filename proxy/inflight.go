package proxy

import "math/rand/v2"

// slot is one query awaiting a backend's answer.
type slot struct {
	// prev and next link the slots in deadline order; -1 ends the list.
	prev, next int32
	inUse      bool
	id         uint16 // the ID the backend sees
	clientID   uint16
	client     rawAddr // the client's address in kernel form, to answer it
	ln         int     // index of the listener socket to answer from
	up         *upstream
	pool       *poolSnap
	hash       uint64
	tried      uint64 // policy skip mask of the backends already tried
	attempts   int
	sent       int64 // nanoseconds since the proxy's epoch
	deadline   int64
	// query is the client's query as received (its own ID), kept to retry
	// and to answer SERVFAIL. The buffer stays with the slot for reuse.
	query []byte
	qEnd  int
	// maxUDP is the largest UDP answer the client can take.
	maxUDP int
	// refresh marks a prefetch: its answer updates the cache and goes to
	// no client.
	refresh bool
	// ecs is what was done to the query's ECS, to undo in the answer.
	ecs ecsMode
}

// inflight is one shard's table of outstanding queries. It is bounded: when
// every slot is taken, new queries are shed (answered SERVFAIL and counted).
// Callers hold the shard's lock.
type inflight struct {
	slots []slot
	free  []int32
	// byID maps a backend-side ID to its slot; -1 is free. IDs are unique per
	// shard, so a response is found without knowing which backend sent it,
	// and then checked against the slot's backend.
	byID       [65536]int32
	head, tail int32
	n          int
}

func newInflight(size int) *inflight {
	t := &inflight{slots: make([]slot, size), free: make([]int32, size), head: -1, tail: -1}
	for i := range t.byID {
		t.byID[i] = -1
	}
	for i := range t.free {
		t.free[i] = int32(size - 1 - i)
	}
	return t
}

// alloc takes a free slot and gives it an unpredictable unused ID. It
// returns -1 when the table is full.
func (t *inflight) alloc() int32 {
	if len(t.free) == 0 {
		return -1
	}
	// At most 60000 of 65536 IDs are in use, so a random probe hits a free
	// one at least 8% of the time; a linear walk from the last probe bounds
	// the worst case without making IDs sequential.
	id := uint16(rand.Uint32())
	for tries := 0; t.byID[id] != -1; tries++ {
		if tries < 32 {
			id = uint16(rand.Uint32())
		} else {
			id++
		}
	}
	idx := t.free[len(t.free)-1]
	t.free = t.free[:len(t.free)-1]
	s := &t.slots[idx]
	s.inUse = true
	s.id = id
	s.prev, s.next = -1, -1
	t.byID[id] = idx
	t.n++
	return idx
}

// lookup returns the slot for a backend-side ID, or -1.
func (t *inflight) lookup(id uint16) int32 { return t.byID[id] }

// release returns a slot to the free list, keeping its query buffer.
func (t *inflight) release(idx int32) {
	s := &t.slots[idx]
	t.unlink(idx)
	t.byID[s.id] = -1
	buf := s.query[:0]
	*s = slot{query: buf}
	t.free = append(t.free, idx)
	t.n--
}

// pushBack appends a slot to the deadline list. All attempts share one
// timeout, so appending keeps the list sorted by deadline.
func (t *inflight) pushBack(idx int32) {
	s := &t.slots[idx]
	s.prev, s.next = t.tail, -1
	if t.tail >= 0 {
		t.slots[t.tail].next = idx
	} else {
		t.head = idx
	}
	t.tail = idx
}

func (t *inflight) unlink(idx int32) {
	s := &t.slots[idx]
	if !s.inUse {
		return
	}
	if s.prev >= 0 {
		t.slots[s.prev].next = s.next
	} else if t.head == idx {
		t.head = s.next
	}
	if s.next >= 0 {
		t.slots[s.next].prev = s.prev
	} else if t.tail == idx {
		t.tail = s.prev
	}
	s.prev, s.next = -1, -1
}
