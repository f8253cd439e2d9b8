package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/prometheus/client_golang/prometheus"
)

// BlockStatus is one dynamic block, for GET /api/v1/blocks.
type BlockStatus struct {
	Prefix  string    `json:"prefix"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Dropped uint64    `json:"dropped"` // queries dropped or refused by it
}

func (d *dynBlocks) list(now int64) []BlockStatus {
	out := []BlockStatus{}
	for i := range d.blocks {
		sh := &d.blocks[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.until <= now {
				delete(sh.m, k)
				d.n.Add(-1)
				continue
			}
			out = append(out, BlockStatus{Prefix: k.String(), Reason: b.reason, Since: b.since.UTC(),
				Until: d.epoch.Add(time.Duration(b.until)).UTC(), Dropped: b.dropped})
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b BlockStatus) int { return a.Until.Compare(b.Until) })
	return out
}

func (d *dynBlocks) unblock(p netip.Prefix, now int64) error {
	key := canonicalPrefix(p)
	sh := d.blockShard(key)
	sh.mu.Lock()
	b := sh.m[key]
	if b != nil {
		delete(sh.m, key)
		d.n.Add(-1)
	}
	sh.mu.Unlock()
	if b == nil || b.until <= now {
		return fmt.Errorf("%w: %s", ErrNoBlock, key)
	}
	d.log.Info("dynamic block lifted", "prefix", key)
	if bb := d.blocker.Load(); bb != nil {
		if u, ok := bb.b.(Unblocker); ok {
			if err := u.Unblock(key); err != nil {
				// Lifted here; XDP drops until the block's time is up.
				d.xdpErrs.Add(1)
				d.log.Error("lift dynamic block in XDP", "prefix", key, "err", err)
			}
		}
	}
	return nil
}

// dynBlocks returns p's dynamic blocks when they are configured, brought
// up to date with the current config; nil otherwise. It allocates nothing.
func (p *Proxy) dynBlocks() *dynBlocks {
	cfg := p.cfg.Load()
	d := p.dyn
	if d.forCfg.Load() != cfg {
		d.reconfigure(cfg)
	}
	if d.conf.Load() == nil {
		return nil
	}
	return d
}

// SetBlocker sends every new dynamic block to b as well (the XDP
// blocklist); call it before Run.
func (p *Proxy) SetBlocker(b Blocker) {
	p.dyn.blocker.Store(&blockerBox{b})
}

// Blocks lists the dynamic blocks in force ([]BlockStatus), for
// GET /api/v1/blocks.
func (p *Proxy) Blocks() any {
	return p.BlockList()
}

// BlockList lists the dynamic blocks in force, soonest to expire first.
func (p *Proxy) BlockList() []BlockStatus {
	return p.dyn.list(p.now())
}

// Unblock lifts the dynamic block on prefix (as listed by Blocks); it
// returns an error wrapping ErrNoBlock when there is none, and no other: a
// Blocker that fails to lift it too is logged and counted.
func (p *Proxy) Unblock(prefix netip.Prefix) error {
	return p.dyn.unblock(prefix, p.now())
}

// observeAnswer counts an answer sent to client for the dynamic block
// detectors (rcode and response bytes), where forwarded answers leave.
func (p *Proxy) observeAnswer(client netip.Addr, answer []byte) {
	if len(answer) < dnswire.HeaderLen {
		return
	}
	if d := p.dynBlocks(); d != nil {
		d.observe(client, int(answer[3]&0xF), len(answer), p.now())
	}
}

var (
	descDynBlocks   = prometheus.NewDesc("anyfront_proxy_dynblock_blocks", "Dynamic blocks in force.", nil, nil)
	descDynCreated  = prometheus.NewDesc("anyfront_proxy_dynblock_created_total", "Dynamic blocks put in place.", nil, nil)
	descDynBlocked  = prometheus.NewDesc("anyfront_proxy_dynblock_queries_total", "Queries stopped by a dynamic block, by action.", []string{"action"}, nil)
	descDynOverflow = prometheus.NewDesc("anyfront_proxy_dynblock_overflow_total", "Blocks not put in place because max_blocks were in force.", nil, nil)
	descDynXDPErrs  = prometheus.NewDesc("anyfront_proxy_dynblock_xdp_errors_total", "Dynamic blocks the XDP blocklist refused.", nil, nil)
)

// collectDynBlocks exports the dynamic block counters.
func (p *Proxy) collectDynBlocks(ch chan<- prometheus.Metric) {
	d := p.dyn
	ch <- prometheus.MustNewConstMetric(descDynBlocks, prometheus.GaugeValue, float64(max(d.n.Load(), 0)))
	ch <- prometheus.MustNewConstMetric(descDynCreated, prometheus.CounterValue, float64(d.created.Load()))
	ch <- prometheus.MustNewConstMetric(descDynBlocked, prometheus.CounterValue, float64(d.dropped.Load()), "drop")
	ch <- prometheus.MustNewConstMetric(descDynBlocked, prometheus.CounterValue, float64(d.refused.Load()), "refuse")
	ch <- prometheus.MustNewConstMetric(descDynOverflow, prometheus.CounterValue, float64(d.overflow.Load()))
	ch <- prometheus.MustNewConstMetric(descDynXDPErrs, prometheus.CounterValue, float64(d.xdpErrs.Load()))
}
