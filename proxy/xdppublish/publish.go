// Package xdppublish publishes the hottest answers of the default pool's
// packet cache to the XDP answer cache, which serves them from the kernel
// before they reach a socket. The packet cache stays the one source of
// truth: once a second the publisher picks the entries asked for most over
// the last seconds (Go hits plus the hits XDP reports back, so an answer XDP
// serves does not look cold to Go), ages their TTLs and hands the set to the
// XDP program, which never serves an answer past the expiry it was given.
//
// XDP sees neither rules nor the proxy's dynamic-block detectors, so only
// answers that no rule could touch are published: the core says which
// (Source.RuleFree), rebuilt with every routing snapshot.
//
// It talks to the XDP program only through Dataplane, desired state in full
// every round, and to the cache only through pcache's per-second API
// (Hottest, AddHits); it never imports proxy and is never on the per-packet
// path.
package xdppublish

import (
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf/xdpanswer"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/pcache"
)

// Dataplane is the XDP program's answer map (ebpf.Dataplane).
type Dataplane interface {
	SyncAnswers(answers []xdpanswer.Answer) error
	AnswerHits() (map[xdpanswer.AnswerKey]uint64, error)
	SetACL(prefixes []netip.Prefix) error
}

// Source is what the publisher publishes from, as of one routing snapshot.
type Source struct {
	// Config is the config the source was derived from, compared by
	// identity: a source from another config (a reload) empties the map
	// first, as rules, the ACL or the cache may have changed; the rounds
	// after it publish again what still qualifies.
	Config *config.Config
	// Cache is the default pool's packet cache; nil: publish nothing. Up
	// to its cache.xdp_entries answers are published.
	Cache *pcache.Cache
	// ACL is who may query; XDP answers no one else.
	ACL []netip.Prefix
	// ClientSubnet says the pool's answers depend on the client's subnet
	// (ECS), which XDP does not look at: none is published.
	ClientSubnet bool
	// RuleFree says no rule could touch a UDP query of opcode QUERY for
	// name (lowercase wire format) and qtype, whoever sends it.
	RuleFree func(name []byte, qtype uint16) bool
}

const (
	// publishEvery is how often TTLs are rewritten and the set is chosen
	// again.
	publishEvery = time.Second
	// hitDecay is what a second leaves of an entry's rate: the rate
	// follows a change of traffic within a few seconds.
	hitDecay = 0.5
	// minRate is the rate (hits per second, decayed) below which an
	// answer is not worth a slot in the XDP map.
	minRate = 0.5
)

// Publisher picks and publishes the hottest answers.
type Publisher struct {
	dp  Dataplane
	log *slog.Logger
	now func() int64

	// mu serialises publishing with purges and reloads, so that once a
	// purge or a reload returns, XDP serves nothing they removed.
	mu        sync.Mutex
	src       Source
	published int   // answers in the map after the last sync
	lastRound int64 // clock of the last choice
	acl       []netip.Prefix
	aclSet    bool
	// xdpHits is XDP's count per answer as last read: it counts on from
	// there while the answer stays in the map.
	xdpHits map[xdpanswer.AnswerKey]uint64
	// reused across rounds: publishing allocates little once warm
	answers []xdpanswer.Answer
	buf     []byte
	key     pcache.Key
}

// New returns a publisher to dp. now is the clock the cache's entries are
// stamped with (monotonic nanoseconds); log receives the dataplane's errors.
func New(dp Dataplane, log *slog.Logger, now func() int64) *Publisher {
	if log == nil {
		log = slog.Default()
	}
	return &Publisher{dp: dp, log: log, now: now}
}

// Set makes src what the next rounds publish from; the core calls it with
// every snapshot it builds. A source from another config than the last
// empties the map before Set returns.
func (x *Publisher) Set(src Source) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if src.Config != x.src.Config {
		x.sync(nil)
	}
	x.src = src
}

// Run publishes every second until ctx ends, then empties the map: with
// the proxy gone, nothing may keep answering for it.
func (x *Publisher) Run(ctx context.Context) error {
	t := time.NewTicker(publishEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			x.mu.Lock()
			x.sync(nil)
			x.mu.Unlock()
			return nil
		case <-t.C:
			x.mu.Lock()
			x.publishLocked()
			x.mu.Unlock()
		}
	}
}

// Apply runs change (a cache purge; nil for none) and publishes the set
// again before it returns, so that XDP serves nothing change removed once
// Apply returns. A nil publisher just runs change.
func (x *Publisher) Apply(change func()) {
	if x == nil {
		if change != nil {
			change()
		}
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if change != nil {
		change()
	}
	x.publishLocked()
}

func (x *Publisher) sync(answers []xdpanswer.Answer) {
	if len(answers) == 0 && x.published == 0 {
		return
	}
	if err := x.dp.SyncAnswers(answers); err != nil {
		x.log.Warn("xdp answer cache", "err", err)
	}
	x.published = len(answers)
}

// publishLocked chooses and publishes the set (x.mu held).
func (x *Publisher) publishLocked() {
	src := &x.src
	c := src.Cache
	if c == nil || c.Config().XDPEntries <= 0 {
		x.sync(nil)
		return
	}
	if !x.aclSet || !slices.Equal(x.acl, src.ACL) {
		if err := x.dp.SetACL(src.ACL); err != nil {
			x.log.Warn("xdp answer cache: acl", "err", err)
		} else {
			x.acl, x.aclSet = slices.Clone(src.ACL), true
		}
	}
	if src.ClientSubnet {
		x.sync(nil)
		return
	}
	hits, err := x.dp.AnswerHits()
	if err != nil {
		x.log.Warn("xdp answer cache: hits", "err", err)
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
	x.answers = x.answers[:0]
	x.buf = x.buf[:0]
	keep := func(e *pcache.Entry) bool { return eligible(src, e, now) }
	c.Hottest(c.Config().XDPEntries, decay, minRate, keep, func(e *pcache.Entry) {
		var a xdpanswer.Answer
		var ok bool
		if x.buf, a, ok = xdpAnswer(x.buf, e, now, ktOffset); ok {
			x.answers = append(x.answers, a)
		}
	})
	// Sections point into buf, which the appends above may have moved:
	// fix them up now that it is final.
	off := 0
	for i := range x.answers {
		n := len(x.answers[i].Sections)
		x.answers[i].Sections = x.buf[off : off+n : off+n]
		off += n
	}
	x.sync(x.answers)
}

// feedXDPHits adds what XDP answered since the last round to each entry's
// hits, so the rate sees both halves of the traffic.
func (x *Publisher) feedXDPHits(c *pcache.Cache, hits map[xdpanswer.AnswerKey]uint64) {
	if hits == nil {
		return
	}
	for ak, n := range hits {
		// A count below the last one means XDP's entry was removed and
		// inserted again: it counts from zero.
		d := n
		if last := x.xdpHits[ak]; n >= last {
			d = n - last
		}
		// EDNS version 0: XDP passes every other version to the proxy.
		if d > 0 && x.key.SetQuestion(ak.Name, ak.Type, ak.Class, ak.EDNS, ak.DO, ak.CD) {
			c.AddHits(&x.key, d)
		}
	}
	x.xdpHits = hits
}

// eligible says whether e may be served by XDP now.
func eligible(src *Source, e *pcache.Entry, now int64) bool {
	// Keys that carry a client subnet (pcache/ecs.go) do not parse: XDP cannot
	// tell subnets apart.
	q, ok := pcache.ParseKey(e.Key)
	if !ok || q.Version != 0 { // EDNS version 0 only
		return false
	}
	if now >= e.Until {
		return false
	}
	if len(e.Answer) < dnswire.HeaderLen {
		return false
	}
	rcode := e.Answer[3] & 0xF
	if rcode != dnswire.RcodeNoError && rcode != dnswire.RcodeNXDomain {
		return false
	}
	qEnd, ok := dnswire.SkipName(e.Answer, dnswire.HeaderLen)
	if !ok || qEnd+4 > len(e.Answer) || len(e.Answer)-(qEnd+4) > xdpanswer.MaxAnswerSections {
		return false
	}
	if !plainOPT(e.Answer, qEnd+4) {
		return false
	}
	return src.RuleFree == nil || src.RuleFree(q.Name, q.Type)
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
func xdpAnswer(buf []byte, e *pcache.Entry, now, ktOffset int64) ([]byte, xdpanswer.Answer, bool) {
	qEnd, _ := dnswire.SkipName(e.Answer, dnswire.HeaderLen)
	qEnd += 4
	start := len(buf)
	buf = append(buf, e.Answer[qEnd:]...)
	sec := buf[start:]
	age := uint32((now - e.Stored) / int64(time.Second))
	for _, off := range e.TTLs {
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
	q, _ := pcache.ParseKey(e.Key)
	until := min(e.Until, e.Stored+int64(age+2)*int64(time.Second))
	return buf, xdpanswer.Answer{
		Key: xdpanswer.AnswerKey{
			Name:  string(q.Name),
			Type:  q.Type,
			Class: q.Class,
			EDNS:  q.EDNS,
			DO:    q.DO,
			CD:    q.CD,
		},
		Flags: binary.BigEndian.Uint16(e.Answer[2:]),
		Counts: [3]uint16{
			binary.BigEndian.Uint16(e.Answer[6:]),
			binary.BigEndian.Uint16(e.Answer[8:]),
			binary.BigEndian.Uint16(e.Answer[10:]),
		},
		Sections: sec,
		Expires:  until + ktOffset,
	}, true
}
