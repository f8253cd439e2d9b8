package proxy

import (
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf/xdpanswer"
	"github.com/anyfront/anyfront/proxy/policy"
)

// The XDP answer cache serves the hottest answers of the default pool's
// packet cache from the kernel, before they reach a socket. The packet cache
// stays the one source of truth: once a second the publisher picks the
// entries asked for most over the last seconds (Go hits plus the hits XDP
// reports back, so an answer XDP serves does not look cold to Go), ages
// their TTLs and hands the set to the XDP program, which never serves an
// answer past the expiry it was given.
//
// XDP sees neither rules nor the proxy's dynamic-block detectors, so only
// answers that no rule could touch are published: a name and type for
// which some rule may match (whatever the client) stays with the proxy.

// AnswerPublisher is the XDP program's answer map (ebpf.Dataplane).
type AnswerPublisher interface {
	SyncAnswers(answers []xdpanswer.Answer) error
	AnswerHits() (map[xdpanswer.AnswerKey]uint64, error)
	SetACL(prefixes []netip.Prefix) error
}

const (
	// publishEvery is how often TTLs are rewritten and the set is chosen
	// again.
	publishEvery = time.Second
	// hitDecay is what a second leaves of an entry's rate: the rate
	// follows a change of traffic within a few seconds.
	hitDecay = 0.5
)

// xdpPublisher picks and publishes the hottest answers.
type xdpPublisher struct {
	p   *Proxy
	pub AnswerPublisher

	// mu serialises publishing with purges and reloads, so that once a
	// purge or a reload returns, XDP serves nothing they removed.
	mu        sync.Mutex
	published int   // answers in the map after the last sync
	lastRound int64 // proxy clock of the last choice
	now       func() int64
	cfgSeen   *config.Config // guarded by the proxy's buildMu
	acl       []netip.Prefix
	aclSet    bool
	// reused across rounds: publishing allocates little once warm
	cands   []xdpCandidate
	answers []xdpanswer.Answer
	buf     []byte
}

type xdpCandidate struct {
	rate float32
	sh   *cacheShard
	e    *entry
}

// SetAnswerPublisher makes the proxy publish its default pool's hottest
// cached answers to pub (the XDP answer cache) when that pool's
// cache.xdp_entries is above 0. Call it before Run.
func (p *Proxy) SetAnswerPublisher(pub AnswerPublisher) {
	p.xdp = &xdpPublisher{p: p, pub: pub, now: p.now}
}

// run publishes every second until done closes, then empties the map: with
// the proxy gone, nothing may keep answering for it.
func (x *xdpPublisher) run(done <-chan struct{}) {
	t := time.NewTicker(publishEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			x.mu.Lock()
			x.sync(nil)
			x.mu.Unlock()
			return
		case <-t.C:
			x.mu.Lock()
			x.publishLocked()
			x.mu.Unlock()
		}
	}
}

// clear empties the map now (a reload: the rules, ACL or cache may have
// changed; the next round publishes again what is still eligible).
func (x *xdpPublisher) clear() {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.sync(nil)
}

// lock and unlockPublishing bracket a cache purge: the purge happens under
// the lock and the set is republished before it is released, so a purge
// returns only once XDP has forgotten what it removed.
func (x *xdpPublisher) lock() {
	if x != nil {
		x.mu.Lock()
	}
}

func (x *xdpPublisher) unlockPublishing() {
	if x != nil {
		x.publishLocked()
		x.mu.Unlock()
	}
}

func (x *xdpPublisher) sync(answers []xdpanswer.Answer) {
	if len(answers) == 0 && x.published == 0 {
		return
	}
	if err := x.pub.SyncAnswers(answers); err != nil {
		x.p.log.Warn("xdp answer cache", "err", err)
	}
	x.published = len(answers)
}

// publishLocked chooses and publishes the set (x.mu held).
func (x *xdpPublisher) publishLocked() {
	snap := x.p.snap.Load()
	if snap == nil || snap.def == nil || snap.def.cache == nil || snap.def.cache.cfg.XDPEntries <= 0 {
		x.sync(nil)
		return
	}
	if !x.aclSet || !slices.Equal(x.acl, snap.acl) {
		if err := x.pub.SetACL(snap.acl); err != nil {
			x.p.log.Warn("xdp answer cache: acl", "err", err)
		} else {
			x.acl, x.aclSet = slices.Clone(snap.acl), true
		}
	}
	c := snap.def.cache
	if cfg := x.p.cfg.Load(); cfg != nil {
		if pc := cfg.Pools[snap.def.name]; pc != nil && (pc.ECS.Add || pc.ECS.Override) {
			// Its answers depend on the client's subnet, which XDP
			// does not look at.
			x.sync(nil)
			return
		}
	}
	hits, err := x.pub.AnswerHits()
	if err != nil {
		x.p.log.Warn("xdp answer cache: hits", "err", err)
	}
	now := x.now()
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	// The XDP program's clock (CLOCK_MONOTONIC) minus the proxy's.
	ktOffset := ts.Nano() - now

	x.feedXDPHits(c, hits)
	// The rate decays with time, not with rounds: a purge's extra round
	// must not make every entry look colder.
	decay := float32(1)
	if x.lastRound != 0 {
		decay = float32(math.Pow(hitDecay, float64(now-x.lastRound)/float64(time.Second)))
	}
	x.lastRound = now
	x.cands = x.cands[:0]
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, e := range sh.ring {
			e.rate = e.rate*decay + float32(e.hits-e.seenHits)
			e.seenHits = e.hits
			if e.rate >= 0.5 && xdpEligible(snap, c, e, now) {
				x.cands = append(x.cands, xdpCandidate{rate: e.rate, sh: sh, e: e})
			}
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(x.cands, func(a, b xdpCandidate) int {
		switch {
		case a.rate > b.rate:
			return -1
		case a.rate < b.rate:
			return 1
		}
		return 0
	})
	if len(x.cands) > c.cfg.XDPEntries {
		x.cands = x.cands[:c.cfg.XDPEntries]
	}
	x.answers = x.answers[:0]
	x.buf = x.buf[:0]
	for _, cd := range x.cands {
		cd.sh.mu.Lock()
		// Between the two locks the entry may have been evicted and
		// reused, or refreshed: check again, it is cheap.
		if xdpEligible(snap, c, cd.e, now) {
			var a xdpanswer.Answer
			var ok bool
			if x.buf, a, ok = xdpAnswer(x.buf, c, cd.e, now, ktOffset); ok {
				x.answers = append(x.answers, a)
			}
		}
		cd.sh.mu.Unlock()
	}
	// Sections point into buf, which the appends above may have moved:
	// fix them up now that it is final.
	off := 0
	for i := range x.answers {
		n := len(x.answers[i].Sections)
		x.answers[i].Sections = x.buf[off : off+n : off+n]
		off += n
	}
	x.sync(x.answers)
	clear(x.cands) // drop entry pointers until the next round
}

// feedXDPHits adds what XDP answered since the last round to each entry's
// hits, so the rate sees both halves of the traffic.
func (x *xdpPublisher) feedXDPHits(c *packetCache, hits map[xdpanswer.AnswerKey]uint64) {
	var k cacheKey
	for ak, n := range hits {
		if !k.setFromAnswerKey(ak) {
			continue
		}
		sh := c.shard(k.h)
		sh.mu.Lock()
		if e := sh.find(&k); e != nil {
			// A count below the last one means XDP's entry was removed
			// and inserted again: it counts from zero.
			d := n
			if n >= e.xdpHits {
				d = n - e.xdpHits
			}
			e.hits += d
			e.xdpHits = n
		}
		sh.mu.Unlock()
	}
}

// setFromAnswerKey builds the packet cache key XDP's key stands for (EDNS
// version 0: XDP passes every other version to the proxy).
func (k *cacheKey) setFromAnswerKey(ak xdpanswer.AnswerKey) bool {
	n := len(ak.Name)
	if n == 0 || n > dnswire.MaxNameLen {
		return false
	}
	copy(k.buf[:], ak.Name)
	binary.BigEndian.PutUint16(k.buf[n:], ak.Type)
	binary.BigEndian.PutUint16(k.buf[n+2:], ak.Class)
	var flags byte
	if ak.EDNS {
		flags |= 1
	}
	if ak.DO {
		flags |= 2
	}
	if ak.CD {
		flags |= 4
	}
	k.buf[n+4] = flags
	k.buf[n+5] = 0
	k.n = n + 6
	k.h = policy.HashName(k.buf[:k.n])
	return true
}

// xdpEligible says whether e may be served by XDP now (its shard locked).
func xdpEligible(snap *snapshot, c *packetCache, e *entry, now int64) bool {
	// Keys that go on past name, type, class, flags and EDNS version carry
	// a client subnet (ecs.go): XDP cannot tell subnets apart.
	if n, ok := keyNameLen(e.key); !ok || len(e.key) != n+6 || e.key[n+5] != 0 { // EDNS version 0 only
		return false
	}
	if now >= xdpUntil(c, e) {
		return false
	}
	if len(e.answer) < dnswire.HeaderLen {
		return false
	}
	rcode := e.answer[3] & 0xF
	if rcode != dnswire.RcodeNoError && rcode != dnswire.RcodeNXDomain {
		return false
	}
	qEnd, ok := dnswire.SkipName(e.answer, dnswire.HeaderLen)
	if !ok || qEnd+4 > len(e.answer) || len(e.answer)-(qEnd+4) > xdpanswer.MaxAnswerSections {
		return false
	}
	if !plainOPT(e.answer, qEnd+4) {
		return false
	}
	name := e.key[:len(e.key)-6]
	qtype := binary.BigEndian.Uint16(e.key[len(e.key)-6:])
	for i := range snap.ruleRoutes {
		r := snap.rules.At(i)
		// A rule forwarding to the default pool itself, its cache
		// included, ends where no rule would have: the same answer.
		if r.Forwards() && snap.ruleRoutes[i].pool == snap.def {
			continue
		}
		if r.MayMatch(name, qtype) {
			return false
		}
	}
	return true
}

// keyNameLen returns the length of the wire name a cache key starts with.
func keyNameLen(key []byte) (int, bool) {
	for i := 0; i < len(key) && i < dnswire.MaxNameLen; i += int(key[i]) + 1 {
		if key[i] == 0 {
			return i + 1, true
		}
	}
	return 0, false
}

// xdpUntil is when XDP must stop serving e: at its expiry, or, when
// prefetch is on, where the prefetch window opens, so that the last
// queries of its life reach the proxy and refresh it: a popular name
// served by XDP never misses either.
func xdpUntil(c *packetCache, e *entry) int64 {
	if c.cfg.Prefetch && e.ttl >= 2 {
		window := max(int64(e.ttl)*int64(time.Second)/10, int64(time.Second))
		return e.expires - window
	}
	return e.expires
}

// plainOPT says whether the records from off carry no EDNS option: an
// option may belong to one client (a cookie, padding), and XDP copies
// the same bytes to everyone.
func plainOPT(msg []byte, off int) bool {
	for off < len(msg) {
		nameEnd, ok := dnswire.SkipName(msg, off)
		if !ok {
			return false
		}
		var typ uint16
		if off, typ, ok = dnswire.SkipRecord(msg, off); !ok {
			return false
		}
		if typ == dnswire.TypeOPT && binary.BigEndian.Uint16(msg[nameEnd+8:]) != 0 {
			return false
		}
	}
	return true
}

// xdpAnswer appends e's sections with aged TTLs to buf and describes them.
// A published answer is valid until its age would tick over once more: XDP
// serves TTLs at most a second above what the proxy would.
func xdpAnswer(buf []byte, c *packetCache, e *entry, now, ktOffset int64) ([]byte, xdpanswer.Answer, bool) {
	qEnd, _ := dnswire.SkipName(e.answer, dnswire.HeaderLen)
	qEnd += 4
	start := len(buf)
	buf = append(buf, e.answer[qEnd:]...)
	sec := buf[start:]
	age := uint32((now - e.stored) / int64(time.Second))
	for _, off := range e.ttls {
		o := int(off) - qEnd
		if o < 0 || o+4 > len(sec) {
			return buf[:start], xdpanswer.Answer{}, false
		}
		t := binary.BigEndian.Uint32(sec[o:])
		if t > age {
			t -= age
		} else {
			t = 0
		}
		binary.BigEndian.PutUint32(sec[o:], t)
	}
	n := len(e.key) - 6
	flags := e.key[n+4]
	until := min(xdpUntil(c, e), e.stored+int64(age+2)*int64(time.Second))
	return buf, xdpanswer.Answer{
		Key: xdpanswer.AnswerKey{
			Name:  string(e.key[:n]),
			Type:  binary.BigEndian.Uint16(e.key[n:]),
			Class: binary.BigEndian.Uint16(e.key[n+2:]),
			EDNS:  flags&1 != 0,
			DO:    flags&2 != 0,
			CD:    flags&4 != 0,
		},
		Flags: binary.BigEndian.Uint16(e.answer[2:]),
		Counts: [3]uint16{
			binary.BigEndian.Uint16(e.answer[6:]),
			binary.BigEndian.Uint16(e.answer[8:]),
			binary.BigEndian.Uint16(e.answer[10:]),
		},
		Sections: sec,
		Expires:  until + ktOffset,
	}, true
}
