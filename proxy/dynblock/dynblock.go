// Package dynblock owns dynamic blocks: sliding-window detectors per source
// prefix (queries, answers by rcode, response bytes), the blocks they put
// in place with their expiry and bound, the list and early lift the admin
// API shows, and the hand-off of each new block to another layer (the XDP
// blocklist) through Blocker.
//
// It is a leaf: it never imports proxy, knows no socket or packet (only a
// client address, an rcode and a size), and is reconfigured by the proxy
// when the config changes, never by the packet path.
package dynblock

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/internal/srctable"
)

// Blocker takes dynamic blocks to another layer, the XDP blocklist: the
// ebpf package's Dataplane satisfies it. Block must not block for long: it
// is called on the query path, once per new block.
type Blocker interface {
	Block(p netip.Prefix, until time.Time) error
}

// Unblocker is what a Blocker that can lift a block early also has;
// without it, an operator's unblock lifts the proxy's block only and XDP
// keeps dropping until the block's time is up.
type Unblocker interface {
	Unblock(p netip.Prefix) error
}

// ErrNoBlock is Unblock's answer for a prefix that is not blocked.
var ErrNoBlock = errors.New("no such dynamic block")

// maxDetectors matches config's bound on dynamic_blocks.detectors.
const maxDetectors = 8

const (
	detQueries uint8 = iota
	detRcode
	detBytes
)

// Blocks measures every source prefix with sliding windows and blocks
// the ones that go over a detector's rate. Measuring takes one lock of 64
// per query and per answer; checking blocks takes none while there are
// none. Times ("now") are monotonic nanoseconds since the epoch given to
// New.
type Blocks struct {
	log     *slog.Logger
	epoch   time.Time // now counts from it
	blocker Blocker   // nil: blocks stay here

	mu     sync.Mutex // serialises reconfiguration
	conf   atomic.Pointer[dynConf]
	forCfg *config.DynBlocks // guarded by mu
	gen    uint64            // guarded by mu

	blocks [srctable.Shards]blockShard
	n      atomic.Int64 // blocks in force (some may have expired unseen)

	dropped  atomic.Uint64 // queries dropped by a block
	refused  atomic.Uint64 // queries refused by a block
	created  atomic.Uint64 // blocks put in place
	overflow atomic.Uint64 // blocks not put in place: max_blocks reached
	xdpErrs  atomic.Uint64 // Blocker failures
}

// dynConf is a compiled dynamic_blocks section.
type dynConf struct {
	gen        uint64
	v4, v6     int
	refuse     bool
	maxBlocks  int64
	dets       []dynDet
	onQuery    bool // some detector counts queries
	onAnswer   bool // some detector counts answers
	maxTracked int
	tab        *srctable.Table[dynWindows] // kept across reloads that keep max_tracked
}

type dynDet struct {
	kind     uint8
	rcode    int
	window   int64   // nanoseconds
	limit    float64 // events per window that trip the detector
	blockFor int64
	reason   string
}

// dynWindows is one prefix's sliding windows, a pair of fixed windows per
// detector: the estimate is the current window plus the share of the
// previous one that the sliding window still covers.
type dynWindows struct {
	gen uint64
	w   [maxDetectors]slidingWindow
}

type slidingWindow struct {
	idx       int64 // which fixed window cur counts
	prev, cur uint64
}

// add counts n events at now and returns the sliding estimate.
func (s *slidingWindow) add(n uint64, now, window int64) float64 {
	idx := now / window
	switch {
	case idx == s.idx:
	case idx == s.idx+1:
		s.prev, s.cur = s.cur, 0
	default:
		s.prev, s.cur = 0, 0
	}
	s.idx = idx
	s.cur += n
	covered := 1 - float64(now-idx*window)/float64(window)
	return float64(s.prev)*covered + float64(s.cur)
}

// blockShard holds the blocks of one shard of prefixes.
type blockShard struct {
	mu sync.Mutex
	m  map[netip.Prefix]*dynBlock
	_  [48]byte
}

type dynBlock struct {
	until   int64 // monotonic, as now
	since   time.Time
	reason  string
	dropped uint64
}

// New makes dynamic blocks, off until Reconfigure is given a section. Times
// count from epoch; every new block goes to blocker too when it is not nil.
func New(log *slog.Logger, epoch time.Time, blocker Blocker) *Blocks {
	return &Blocks{log: log, epoch: epoch, blocker: blocker}
}

// Reconfigure compiles a config's dynamic_blocks section (nil turns dynamic
// blocks off). Measurements restart with every new section; blocks in
// force stay until they expire. The same section again changes nothing.
func (d *Blocks) Reconfigure(c *config.DynBlocks) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.forCfg == c {
		return
	}
	d.forCfg = c
	old := d.conf.Load()
	if c == nil {
		d.conf.Store(nil)
		return
	}
	d.gen++
	nc := &dynConf{gen: d.gen, v4: c.V4Prefix, v6: c.V6Prefix, refuse: c.Action == "refuse",
		maxBlocks: int64(c.MaxBlocks), maxTracked: c.MaxTracked}
	for _, det := range c.Detectors[:min(len(c.Detectors), maxDetectors)] {
		dd := dynDet{window: int64(det.Window), limit: det.Rate * det.Window.Seconds(), blockFor: int64(det.BlockFor)}
		switch det.Kind {
		case "queries":
			dd.kind, nc.onQuery = detQueries, true
			dd.reason = fmt.Sprintf("over %g queries/s", det.Rate)
		case "rcode":
			dd.kind, dd.rcode, nc.onAnswer = detRcode, det.Rcode, true
			dd.reason = fmt.Sprintf("over %g %s answers/s", det.Rate, dns.RcodeToString[det.Rcode])
		case "response_bytes":
			dd.kind, nc.onAnswer = detBytes, true
			dd.reason = fmt.Sprintf("over %g response bytes/s", det.Rate)
		}
		nc.dets = append(nc.dets, dd)
	}
	if old != nil && old.maxTracked == nc.maxTracked {
		nc.tab = old.tab
	} else {
		nc.tab = srctable.New[dynWindows](nc.maxTracked)
	}
	d.conf.Store(nc)
}

// On reports whether dynamic blocks are configured. It is nil-safe.
func (d *Blocks) On() bool { return d != nil && d.conf.Load() != nil }

// Admit checks a query from client against the blocks and counts it. It
// returns blocked and, for a blocked query, whether to refuse (else drop).
func (d *Blocks) Admit(client netip.Addr, now int64) (blocked, refuse bool) {
	c := d.conf.Load()
	if c == nil {
		return false, false
	}
	key := srctable.SourcePrefix(client, c.v4, c.v6)
	if d.n.Load() > 0 && d.isBlocked(key, now) {
		d.countBlocked(c)
		return true, c.refuse
	}
	if !c.onQuery {
		return false, false
	}
	if det := d.measure(c, key, now, -1, 0); det >= 0 {
		d.block(c, key, &c.dets[det], now)
		d.countBlocked(c)
		return true, c.refuse
	}
	return false, false
}

func (d *Blocks) countBlocked(c *dynConf) {
	if c.refuse {
		d.refused.Add(1)
	} else {
		d.dropped.Add(1)
	}
}

// Observe counts an answer of size bytes with rcode sent to client.
func (d *Blocks) Observe(client netip.Addr, rcode, size int, now int64) {
	c := d.conf.Load()
	if c == nil || !c.onAnswer {
		return
	}
	key := srctable.SourcePrefix(client, c.v4, c.v6)
	if det := d.measure(c, key, now, rcode, size); det >= 0 {
		d.block(c, key, &c.dets[det], now)
	}
}

// measure adds a query (rcode < 0) or an answer to key's windows and
// returns the first detector over its limit, or -1.
func (d *Blocks) measure(c *dynConf, key netip.Prefix, now int64, rcode, size int) int {
	sh := c.tab.Shard(key)
	over := -1
	sh.Lock()
	w, _ := sh.Get(key)
	if w.gen != c.gen {
		*w = dynWindows{gen: c.gen}
	}
	for i := range c.dets {
		det := &c.dets[i]
		var n uint64
		switch {
		case rcode < 0 && det.kind == detQueries:
			n = 1
		case rcode >= 0 && det.kind == detRcode && det.rcode == rcode:
			n = 1
		case rcode >= 0 && det.kind == detBytes:
			n = uint64(size)
		default:
			continue
		}
		if w.w[i].add(n, now, det.window) > det.limit && over < 0 {
			over = i
			// A new block after this one expires needs new evidence.
			w.w[i] = slidingWindow{}
		}
	}
	sh.Unlock()
	return over
}

func (d *Blocks) blockShard(key netip.Prefix) *blockShard {
	return &d.blocks[srctable.PrefixHash(key)%srctable.Shards]
}

// isBlocked reports whether key is blocked now, counting the query
// against the block; it removes an expired block.
func (d *Blocks) isBlocked(key netip.Prefix, now int64) bool {
	sh := d.blockShard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[key]
	switch {
	case b == nil:
		return false
	case b.until <= now:
		delete(sh.m, key)
		d.n.Add(-1)
		return false
	}
	b.dropped++
	return true
}

// block puts key under a block for det's time, or extends its block. No
// two block locks are ever held at once (sweep takes them one by one).
func (d *Blocks) block(c *dynConf, key netip.Prefix, det *dynDet, now int64) {
	until := now + det.blockFor
	sh := d.blockShard(key)
	if d.extend(sh, key, until, now) {
		return
	}
	if !d.reserve(c, now) {
		d.overflow.Add(1)
		return
	}
	sh.mu.Lock()
	if b := sh.m[key]; b != nil {
		// Either undoes the reservation (the block is in force) or
		// uncounts the expired block replaced below.
		d.n.Add(-1)
		if b.until > now {
			// Another worker blocked it meanwhile.
			b.until = max(b.until, until)
			sh.mu.Unlock()
			return
		}
	}
	if sh.m == nil {
		sh.m = map[netip.Prefix]*dynBlock{}
	}
	wall := d.epoch.Add(time.Duration(until))
	sh.m[key] = &dynBlock{until: until, since: d.epoch.Add(time.Duration(now)), reason: det.reason}
	sh.mu.Unlock()
	d.created.Add(1)
	d.log.Warn("dynamic block", "prefix", key, "reason", det.reason, "until", wall.UTC().Format(time.RFC3339))
	if d.blocker != nil {
		if err := d.blocker.Block(key, wall); err != nil {
			d.xdpErrs.Add(1)
			d.log.Error("dynamic block in XDP", "prefix", key, "err", err)
		}
	}
}

// extend lengthens key's block if it is in force and reports whether it was.
func (d *Blocks) extend(sh *blockShard, key netip.Prefix, until, now int64) bool {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if b := sh.m[key]; b != nil && b.until > now {
		b.until = max(b.until, until)
		return true
	}
	return false
}

// reserve counts one more block if the bound allows, sweeping expired
// blocks first when it does not.
func (d *Blocks) reserve(c *dynConf, now int64) bool {
	for swept := false; ; swept = true {
		for {
			n := d.n.Load()
			if n >= c.maxBlocks {
				break
			}
			if d.n.CompareAndSwap(n, n+1) {
				return true
			}
		}
		if swept {
			return false
		}
		d.sweep(now)
	}
}

// sweep removes expired blocks from every shard, one lock at a time.
func (d *Blocks) sweep(now int64) {
	for i := range d.blocks {
		sh := &d.blocks[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.until <= now {
				delete(sh.m, k)
				d.n.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
}
