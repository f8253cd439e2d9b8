package pcache

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

// The cache stores whole answers as wire bytes, keyed by what changes
// an answer: the lowercased name, type, class, whether the query had EDNS and
// which version, and the DO and CD bits. A hit copies the stored bytes, puts
// the client's ID and question in, and lowers every TTL by the entry's age:
// no unpacking, no allocation.

const (
	// cacheShards spreads the lock: a hit locks one shard of 64, so hits
	// from different workers rarely meet.
	cacheShards = 64
	// StaleTTL is the TTL of an answer served stale (RFC 8767 suggests 30s).
	StaleTTL = 30
	// maxTTLOffsets bounds how many records an entry may hold: answers
	// with more are not cached (a 64 KiB answer has at most a few hundred).
	maxTTLOffsets = 512
	// maxCachedAnswer bounds one entry's size.
	maxCachedAnswer = 8192
)

// entry is one cached answer.
type entry struct {
	key     []byte
	hash    uint64
	answer  []byte   // wire bytes as the backend sent them
	ttls    []uint16 // offsets of every TTL field to age (OPT excluded)
	stored  int64    // proxy clock, ns
	expires int64    // stored + TTL
	ttl     uint32
	// used is the CLOCK bit: set on a hit, cleared as the hand passes.
	used bool
	// refreshing is set while a prefetch for the entry is in flight.
	refreshing bool
	hits       uint64
	// rate is hits per second, decayed, and seenHits the hits when it
	// was last updated (Hottest, hot.go).
	rate     float32
	seenHits uint64
}

// cacheShard is one lock's worth of the cache.
type cacheShard struct {
	mu      sync.Mutex
	index   map[uint64][]*entry // by key hash; a bucket holds the rare collisions
	ring    []*entry            // CLOCK order; len <= cap
	hand    int
	cap     int
	entries int
}

// Cache is one pool's packet cache. Its methods are safe for concurrent
// use; a nil *Cache is no cache, and only New makes a usable one.
type Cache struct {
	cfg    config.Cache
	shards [cacheShards]cacheShard

	hits, misses, stale, stores, evictions, prefetches atomic.Uint64
	// hot is Hottest's scratch, reused across calls.
	hot struct {
		sync.Mutex
		cands []hotCand
	}
}

// New returns a cache of cfg.Size entries, or nil when the size is 0.
func New(cfg config.Cache) *Cache {
	if cfg.Size <= 0 {
		return nil
	}
	c := &Cache{cfg: cfg}
	per := (cfg.Size + cacheShards - 1) / cacheShards
	for i := range c.shards {
		c.shards[i].cap = per
		c.shards[i].index = make(map[uint64][]*entry)
	}
	return c
}

// Config is the configuration the cache was made with.
func (c *Cache) Config() config.Cache { return c.cfg }

func (c *Cache) shard(h uint64) *cacheShard { return &c.shards[h>>58] }

// Result says what Answer returned.
type Result uint8

// What Answer found.
const (
	Miss  Result = iota
	Hit          // a fresh entry
	Stale        // an expired entry within serve_stale, answered with TTL 30
)

// Answer appends the cached answer for the query in msg (parsed into v, key
// k): the client's ID and question, every TTL lowered by the entry's age.
// With stale set it also accepts an entry expired less than serve_stale ago.
// prefetch is set when the caller should refresh the entry now (claimed: no
// other caller gets it until the refresh stores). now is the caller's
// monotonic clock in nanoseconds, the same for every call.
func (c *Cache) Answer(dst []byte, k *Key, msg []byte, v *dnswire.View, now int64, stale bool) (out []byte, res Result, prefetch bool) {
	if k.skip {
		return dst, Miss, false
	}
	out, res, prefetch = c.answerKey(dst, k, msg, v, now, stale)
	if res == Miss && k.shared {
		// Not cached for this subnet: maybe for every subnet (ecs.go).
		n, h := k.n, k.h
		k.n, k.h = k.base, k.hb
		out, res, prefetch = c.answerKey(dst, k, msg, v, now, stale)
		k.n, k.h = n, h
	}
	return out, res, prefetch
}

func (c *Cache) answerKey(dst []byte, k *Key, msg []byte, v *dnswire.View, now int64, stale bool) (out []byte, res Result, prefetch bool) {
	sh := c.shard(k.h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.find(k)
	switch {
	case e == nil:
		return dst, Miss, false
	case now < e.expires:
		res = Hit
	case stale && now < e.expires+int64(c.cfg.ServeStale):
		res = Stale
	default:
		return dst, Miss, false
	}
	e.used = true
	e.hits++
	start := len(dst)
	dst = append(dst, e.answer...)
	out = dst[start:]
	binary.BigEndian.PutUint16(out, v.ID)
	// RD is the client's to set and the answer's to echo (RFC 1035), and
	// it is not in the key: take it from this query.
	out[2] = out[2]&^1 | byte(v.Flags>>8)&1
	copy(out[dnswire.HeaderLen:v.QEnd], msg[dnswire.HeaderLen:v.QEnd])
	age := uint32((now - e.stored) / int64(time.Second))
	for _, off := range e.ttls {
		t := binary.BigEndian.Uint32(out[off:])
		switch {
		case res == Stale:
			t = StaleTTL
		case t > age:
			t -= age
		default:
			t = 0
		}
		binary.BigEndian.PutUint32(out[off:], t)
	}
	// Prefetch an entry still asked for in the last tenth of its life (at
	// least its last second); shorter TTLs than 2s are not worth it.
	if res == Hit && c.cfg.Prefetch && e.ttl >= 2 && !e.refreshing && e.expires-now <= prefetchWindow(e.ttl) {
		e.refreshing = true
		prefetch = true
	}
	return dst, res, prefetch
}

// prefetchWindow is how long before its expiry an entry of ttl seconds
// may be refreshed: its last tenth, at least its last second.
func prefetchWindow(ttl uint32) int64 {
	return max(int64(ttl)*int64(time.Second)/10, int64(time.Second))
}

func (sh *cacheShard) find(k *Key) *entry {
	for _, x := range sh.index[k.h] {
		if string(x.key) == string(k.Bytes()) {
			return x
		}
	}
	return nil
}

func (sh *cacheShard) unindex(e *entry) {
	b := sh.index[e.hash]
	for i, x := range b {
		if x == e {
			b = append(b[:i], b[i+1:]...)
			break
		}
	}
	if len(b) == 0 {
		delete(sh.index, e.hash)
	} else {
		sh.index[e.hash] = b
	}
}

// Store caches a backend's answer to the query keyed by k, if it may be
// cached: NOERROR or NXDOMAIN (SERVFAIL only with temporary_failure_ttl), not
// truncated, every record parsable. resp is copied, never kept.
func (c *Cache) Store(k *Key, resp []byte, now int64) {
	if k.skip || len(resp) > maxCachedAnswer || len(resp) < dnswire.HeaderLen {
		return
	}
	var v dnswire.View
	if v.ParseHeader(resp) != nil || v.Flags&dnswire.FlagTC != 0 || v.QDCount != 1 {
		return
	}
	var ttlOffs [maxTTLOffsets]uint16
	n := 0
	var ttl uint32 = 1<<32 - 1
	rcode := v.Rcode()
	off, ok := dnswire.SkipName(resp, dnswire.HeaderLen)
	if !ok || off+4 > len(resp) {
		return
	}
	off += 4
	negative := rcode == dnswire.RcodeNXDomain || v.ANCount == 0
	sawSOA := false
	for i := 0; i < int(v.ANCount)+int(v.NSCount)+int(v.ARCount); i++ {
		start := off
		nameEnd, ok := dnswire.SkipName(resp, off)
		if !ok {
			return
		}
		var typ uint16
		if off, typ, ok = dnswire.SkipRecord(resp, start); !ok {
			return
		}
		if typ == dnswire.TypeOPT {
			continue // its "TTL" is EDNS flags
		}
		if n == maxTTLOffsets {
			return
		}
		ttlOffs[n] = uint16(nameEnd + 4)
		n++
		t := binary.BigEndian.Uint32(resp[nameEnd+4:])
		if negative && typ == 6 && i >= int(v.ANCount) && i < int(v.ANCount)+int(v.NSCount) {
			// RFC 2308: a negative answer lives for min(SOA TTL, SOA MINIMUM).
			sawSOA = true
			if rdEnd := off; rdEnd >= 4 {
				if m := binary.BigEndian.Uint32(resp[rdEnd-4:]); m < t {
					t = m
				}
			}
		}
		if !negative || typ == 6 {
			ttl = min(ttl, t)
		}
	}
	var d time.Duration
	switch {
	case rcode == dnswire.RcodeServFail:
		if c.cfg.TemporaryFailureTTL == 0 {
			return
		}
		d = c.cfg.TemporaryFailureTTL
	case rcode != dnswire.RcodeNoError && rcode != dnswire.RcodeNXDomain:
		return
	case negative && !sawSOA:
		return // no SOA: nothing says how long the denial holds
	default:
		d = time.Duration(ttl) * time.Second
		if negative {
			d = min(d, c.cfg.MaxNegativeTTL)
		}
		d = min(max(d, c.cfg.MinTTL), c.cfg.MaxTTL)
	}
	if d <= 0 {
		return
	}
	c.insert(k, resp, ttlOffs[:n], now, d)
}

func (c *Cache) insert(k *Key, resp []byte, ttls []uint16, now int64, d time.Duration) {
	sh := c.shard(k.h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.find(k) // a refresh updates in place and keeps its ring slot
	if e == nil {
		e = sh.newEntry(c)
		e.key = append(e.key[:0], k.Bytes()...)
		e.hash = k.h
		sh.index[k.h] = append(sh.index[k.h], e)
	}
	e.answer = append(e.answer[:0], resp...)
	e.ttls = append(e.ttls[:0], ttls...)
	// Per-client options are no later client's (clientopts.go).
	if removed, at := dnswire.StripClientOpts(&e.answer); removed > 0 {
		for i, off := range e.ttls {
			if int(off) >= at {
				e.ttls[i] = off - uint16(removed)
			}
		}
	}
	e.stored = now
	e.ttl = uint32(d / time.Second)
	e.expires = now + int64(d)
	e.refreshing = false
	c.stores.Add(1)
}

// newEntry returns a blank entry placed in the ring, evicting with CLOCK
// when the shard is full: the hand skips (and clears) entries hit since it
// last passed. An evicted entry is reused whole, buffers included, so a full
// cache stores without allocating.
func (sh *cacheShard) newEntry(c *Cache) *entry {
	if len(sh.ring) < sh.cap {
		e := &entry{}
		sh.ring = append(sh.ring, e)
		sh.entries++
		return e
	}
	for {
		if sh.hand >= len(sh.ring) {
			sh.hand = 0
		}
		e := sh.ring[sh.hand]
		sh.hand++
		if e.used {
			e.used = false
			continue
		}
		sh.unindex(e)
		c.evictions.Add(1)
		*e = entry{key: e.key[:0], answer: e.answer[:0], ttls: e.ttls[:0]}
		return e
	}
}

// Purge removes every entry whose name ends in suffix (lowercase wire
// format; the root removes everything) and returns how many it removed.
func (c *Cache) Purge(suffix []byte) int {
	removed := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		kept := sh.ring[:0]
		for _, e := range sh.ring {
			if nameEndsWith(e.key, suffix) {
				sh.unindex(e)
				removed++
				continue
			}
			kept = append(kept, e)
		}
		clear(sh.ring[len(kept):])
		sh.ring = kept
		sh.entries = len(kept)
		sh.hand = 0
		sh.mu.Unlock()
	}
	return removed
}

// nameEndsWith reports whether the wire name at the start of key ends with
// the wire name suffix, at a label boundary.
func nameEndsWith(key, suffix []byte) bool {
	for i := 0; i < len(key) && key[i] != 0; i += int(key[i]) + 1 {
		if len(key)-i >= len(suffix) && string(key[i:i+len(suffix)]) == string(suffix) {
			return true
		}
	}
	return len(suffix) == 1 // the root
}

// Len is the number of entries cached.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += sh.entries
		sh.mu.Unlock()
	}
	return n
}
