package proxy

import (
	"math/rand/v2"
	"net/netip"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/proxy/stream"
)

// maxAttempts bounds a query's sends: the first and up to config's retries
// (at most 7) more, hedges included.
const maxAttempts = 8

// attempt is one send of a query to one backend.
type attempt struct {
	up   *upstream
	sent int64 // nanoseconds since the proxy's epoch
	// live: awaited still (not answered, refused or given up).
	live bool
	bit  uint64 // the backend's bit in the policy's skip mask
}

// slot is one query awaiting a backend's answer. All its attempts share
// the backend-side ID, so whichever backend answers first wins, and a late
// answer from an earlier attempt is recognised (and measured) rather than
// taken for a forgery.
type slot struct {
	// prev and next link the slots of one timer-wheel bucket; -1 ends it.
	prev, next int32
	bucket     int32 // the wheel bucket the slot is linked in; -1: none
	inUse      bool
	id         uint16 // the ID the backends see
	clientID   uint16
	client     udpsock.Addr // the client's address in kernel form, to answer it
	ln         int          // index of the listener socket to answer from
	pool       *poolSnap
	hash       uint64
	tried      uint64 // policy skip mask of the backends already tried
	att        [maxAttempts]attempt
	natt       int // attempts made
	live       int // attempts awaited
	// deadline is the query's whole budget; retryAt is when the newest
	// attempt times out (its backend's RTO) and the next one goes;
	// hedgeAt, when not 0, is when the first attempt is hedged; due is
	// the earliest of them, the slot's place in the timer wheel.
	deadline, retryAt, hedgeAt, due int64
	// answered: the client has its answer; the slot stays only to hear
	// what becomes of the other attempts, until they answer or the
	// deadline passes.
	answered bool
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
	ecs dnswire.ECSMode
	// wait, for a query a stream front end read (async.go), takes the
	// answer in place of a UDP client; ln is then -1, and local and tr
	// are the query's own.
	wait  stream.Waiter
	local netip.AddrPort
	tr    dnswire.Transport
}

// reset empties a released slot but keeps its query buffer. It clears only
// the attempts made, not all maxAttempts, since a miss's round trip pays
// for it; TestSlotReset checks that no field is missed.
func (s *slot) reset() {
	clear(s.att[:s.natt])
	s.prev, s.next, s.bucket = 0, 0, 0
	s.inUse = false
	s.id, s.clientID = 0, 0
	s.client = udpsock.Addr{}
	s.ln = 0
	s.pool = nil
	s.hash, s.tried = 0, 0
	s.natt, s.live = 0, 0
	s.deadline, s.retryAt, s.hedgeAt, s.due = 0, 0, 0, 0
	s.answered = false
	s.query = s.query[:0]
	s.qEnd, s.maxUDP = 0, 0
	s.refresh = false
	s.ecs = 0
	s.wait = nil
	s.local = netip.AddrPort{}
	s.tr = 0
}

// attemptTo returns the index of the slot's live attempt to u, or -1.
func (s *slot) attemptTo(u *upstream) int {
	for i := 0; i < s.natt; i++ {
		if s.att[i].live && s.att[i].up == u {
			return i
		}
	}
	return -1
}

// sentTwice reports whether u got more than one attempt of this query: its
// answer then cannot tell which send it answers, so it is no RTT sample
// (Karn's rule).
func (s *slot) sentTwice(u *upstream) bool {
	n := 0
	for i := 0; i < s.natt; i++ {
		if s.att[i].up == u {
			n++
		}
	}
	return n > 1
}

// Timer wheel: each slot sits in the bucket of the tick its next event
// (retry, hedge, deadline) falls in. A tick is wheelTick; the wheel covers
// wheelSize ticks ahead, and a slot due later waits in the last bucket and
// is put back when its bucket comes round. Scheduling is O(1) whatever the
// attempt timeouts, which differ per backend.
const (
	// wheelTick is the resolution of attempt timeouts and hedges: 5 ms
	// against a 20 ms floor, so the timeout goroutine wakes 200 times a
	// second while queries are in flight, and not at all otherwise.
	wheelTick = int64(5e6)
	wheelSize = 512 // 2.56 s ahead
)

// inflight is one shard's table of outstanding queries. It is bounded: when
// every slot is taken, new queries are shed (answered SERVFAIL and counted).
// Callers hold the shard's lock.
type inflight struct {
	slots []slot
	free  []int32
	// byID maps a backend-side ID to its slot; noSlot is free. IDs are unique per
	// shard, so a response is found without knowing which backend sent it,
	// and then checked against the slot's attempts.
	// uint16 halves it to 128 KiB, and a random ID's entry is read for
	// every query and answer, so it stays in cache the more often.
	byID  [65536]uint16
	wheel [wheelSize]int32
	// tick is the last wheel tick expired.
	tick int64
	n    int
}

// noSlot marks a free ID in byID; a table has fewer slots (config caps
// max_inflight at 60000).
const noSlot = 0xFFFF

func newInflight(size int) *inflight {
	size = min(size, noSlot)
	t := &inflight{slots: make([]slot, size), free: make([]int32, size)}
	for i := range t.byID {
		t.byID[i] = noSlot
	}
	for i := range t.wheel {
		t.wheel[i] = -1
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
	for tries := 0; t.byID[id] != noSlot; tries++ {
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
	s.prev, s.next, s.bucket = -1, -1, -1
	t.byID[id] = uint16(idx)
	t.n++
	return idx
}

// lookup returns the slot for a backend-side ID, or -1.
func (t *inflight) lookup(id uint16) int32 {
	if si := t.byID[id]; si != noSlot {
		return int32(si)
	}
	return -1
}

// release returns a slot to the free list, keeping its query buffer.
func (t *inflight) release(idx int32) {
	s := &t.slots[idx]
	t.unlink(idx)
	t.byID[s.id] = noSlot
	s.reset()
	t.free = append(t.free, idx)
	t.n--
}

// schedule (re)places a slot in the bucket of its due time. A time already
// past goes to the next tick.
func (t *inflight) schedule(idx int32) {
	t.unlink(idx)
	s := &t.slots[idx]
	tick := s.due / wheelTick
	tick = max(tick, t.tick+1)
	tick = min(tick, t.tick+wheelSize-1)
	b := int32(tick % wheelSize)
	s.bucket, s.prev, s.next = b, -1, t.wheel[b]
	if s.next >= 0 {
		t.slots[s.next].prev = idx
	}
	t.wheel[b] = idx
}

func (t *inflight) unlink(idx int32) {
	s := &t.slots[idx]
	if s.bucket < 0 {
		return
	}
	if s.prev >= 0 {
		t.slots[s.prev].next = s.next
	} else {
		t.wheel[s.bucket] = s.next
	}
	if s.next >= 0 {
		t.slots[s.next].prev = s.prev
	}
	s.prev, s.next, s.bucket = -1, -1, -1
}

// due appends to into the slots whose time has come by now, taking them
// out of the wheel; the caller fires or reschedules each.
func (t *inflight) expire(now int64, into []int32) []int32 {
	target := now / wheelTick
	if target-t.tick > wheelSize {
		t.tick = target - wheelSize // every bucket is visited once
	}
	for t.tick < target {
		t.tick++
		b := t.tick % wheelSize
		for si := t.wheel[b]; si >= 0; {
			s := &t.slots[si]
			next := s.next
			s.prev, s.next, s.bucket = -1, -1, -1
			into = append(into, si)
			si = next
		}
		t.wheel[b] = -1
	}
	return into
}

// each appends every slot in the wheel to into.
func (t *inflight) each(into []int32) []int32 {
	for _, head := range t.wheel {
		for si := head; si >= 0; si = t.slots[si].next {
			into = append(into, si)
		}
	}
	return into
}
