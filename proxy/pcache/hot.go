package pcache

import "slices"

// Once a second the XDP answer publisher (proxy/xdppublish) asks which
// answers are asked for most: Hottest keeps a decayed hit rate per entry and
// shows the hottest ones, AddHits counts the queries XDP answered itself, so
// that an answer served from the kernel does not look cold here.

// Entry is one cached answer as Hottest shows it. It is the cache's own
// memory: read it, never change or keep it past the call it is passed to.
type Entry struct {
	Key    []byte   // the key it is stored under (ParseKey reads it)
	Answer []byte   // the answer as stored, per-client options stripped
	TTLs   []uint16 // offsets in Answer of every TTL that ages (OPT excluded)
	Stored int64    // when it was stored, on the callers' clock (ns)
	// Until is when a hit stops being a plain one: the expiry, or with
	// prefetch where the prefetch window opens, so that the last queries
	// of its life reach whoever refreshes it.
	Until int64
	Rate  float32 // hits per second, decayed
}

type hotCand struct {
	rate float32
	sh   *cacheShard
	e    *entry
}

// Hottest updates every entry's hit rate, rate*decay plus the hits since the
// last call (decay is what the time since then leaves of a rate), then calls
// emit, hottest first, for at most n entries with a rate of at least minRate
// that keep accepts. keep is asked again right before emit, as an entry may
// change in between. Both run with the entry's shard locked: they must not
// call into the cache.
func (c *Cache) Hottest(n int, decay, minRate float32, keep func(*Entry) bool, emit func(*Entry)) {
	c.hot.Lock()
	defer c.hot.Unlock()
	var view Entry
	cands := c.hot.cands[:0]
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, e := range sh.ring {
			e.rate = e.rate*decay + float32(e.hits-e.seenHits)
			e.seenHits = e.hits
			if e.rate >= minRate && keep(c.show(&view, e)) {
				cands = append(cands, hotCand{rate: e.rate, sh: sh, e: e})
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(cands, func(a, b hotCand) int {
		switch {
		case a.rate > b.rate:
			return -1
		case a.rate < b.rate:
			return 1
		}
		return 0
	})
	all := cands
	if len(cands) > n {
		cands = cands[:n]
	}
	for _, cd := range cands {
		cd.sh.mu.Lock()
		// Between the two locks the entry may have been evicted and
		// reused, or refreshed: check again, it is cheap.
		if c.show(&view, cd.e); keep(&view) {
			emit(&view)
		}
		cd.sh.mu.Unlock()
	}
	clear(all) // drop entry pointers until the next call
	c.hot.cands = all[:0]
}

// show fills v with e (its shard locked).
func (c *Cache) show(v *Entry, e *entry) *Entry {
	until := e.expires
	if c.cfg.Prefetch && e.ttl >= 2 {
		until -= prefetchWindow(e.ttl)
	}
	*v = Entry{Key: e.key, Answer: e.answer, TTLs: e.ttls, Stored: e.stored, Until: until, Rate: e.rate}
	return v
}

// AddHits counts n hits the entry under k had elsewhere (in XDP) and
// reports whether there is one.
func (c *Cache) AddHits(k *Key, n uint64) bool {
	sh := c.shard(k.h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.find(k)
	if e != nil {
		e.hits += n
	}
	return e != nil
}
