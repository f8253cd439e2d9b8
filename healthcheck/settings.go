package healthcheck

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/anyfront/anyfront/config"
)

// settings are one pool's probe settings in the form the Checker uses them.
// A settings value is never modified once built; a reload builds new ones.
type settings struct {
	interval, timeout time.Duration
	rise, fall        int
	lazy, tcp         bool
	healthy           uint16 // bit r set: rcode r counts as healthy
	// query is the packed probe with ID 0; each probe copies it and
	// writes its own ID, so nothing is packed per probe.
	query []byte
	// ratio, window and minSamples configure the live-traffic trigger.
	ratio      float64
	window     time.Duration
	minSamples uint64
}

func newSettings(h config.HealthCheck) (*settings, error) {
	q, err := packQuery(h.QName, h.QType)
	if err != nil {
		return nil, fmt.Errorf("healthcheck: pack probe for %s: %w", h.QName, err)
	}
	s := &settings{
		interval: h.Interval, timeout: h.Timeout,
		rise: max(h.Rise, 1), fall: max(h.Fall, 1),
		lazy: h.Mode == "lazy", tcp: h.TCP,
		query:      q,
		ratio:      h.FailureRatio,
		window:     h.Window,
		minSamples: uint64(max(h.MinSamples, 1)),
	}
	for _, r := range h.Rcodes {
		if r >= 0 && r < 16 {
			s.healthy |= 1 << r
		}
	}
	// A hand-built config (tests, or a caller skipping config.Parse) may
	// leave values zero; the scheduler needs them positive.
	if s.interval <= 0 {
		s.interval = time.Second
	}
	if s.timeout <= 0 || s.timeout >= s.interval {
		s.timeout = s.interval / 2
	}
	if s.window < time.Second {
		s.window = 10 * time.Second
	}
	if s.ratio <= 0 || s.ratio > 1 {
		s.ratio = 0.3
	}
	return s, nil
}

// question is the query's question section, which an answer must echo.
func (s *settings) question() []byte { return s.query[headerLen:] }

// sameTrigger reports whether o has the same live-traffic knobs, so a
// reload that changes only probe settings keeps the traffic window.
func (s *settings) sameTrigger(o *settings) bool {
	return s.ratio == o.ratio && s.window == o.window && s.minSamples == o.minSamples
}

func (s *settings) mode() string {
	if s.lazy {
		return "lazy"
	}
	return "active"
}

// apply makes the Checker's backends match cfg and reports whether the
// schedule may have changed. New calls it with no backends.
func (c *Checker) apply(cfg *config.Config) (bool, error) {
	sets := make(map[string]*settings, len(cfg.Pools))
	shortest := time.Duration(0)
	for name, p := range cfg.Pools {
		s, err := newSettings(p.HealthCheck)
		if err != nil {
			return false, fmt.Errorf("pool %s: %w", name, err)
		}
		sets[name] = s
		if shortest == 0 || s.interval < shortest {
			shortest = s.interval
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.slack = slackFor(shortest)
	now := c.now()
	changed := false
	seen := make(map[string]bool, len(c.backends))
	for _, pool := range cfg.PoolNames {
		set := sets[pool]
		for _, bc := range cfg.Pools[pool].Backends {
			seen[bc.Name] = true
			addr := netip.AddrPortFrom(bc.Address.Addr().Unmap(), bc.Address.Port())
			b := c.backends[bc.Name]
			// pp, like addr, never changes under a probe in flight.
			if b != nil && (b.pool != pool || b.addr != addr || b.pp != bc.ProxyProtocol) {
				c.remove(b)
				b = nil
			}
			if b == nil {
				c.add(bc.Name, pool, addr, bc.ProxyProtocol, set, now)
				changed = true
				continue
			}
			if !sameSettings(b.set, set) {
				c.resettle(b, set, now)
				changed = true
			}
		}
	}
	for name, b := range c.backends {
		if !seen[name] {
			c.remove(b)
			changed = true
		}
	}
	return changed, nil
}

func sameSettings(a, b *settings) bool {
	return a.interval == b.interval && a.timeout == b.timeout && a.rise == b.rise && a.fall == b.fall &&
		a.lazy == b.lazy && a.tcp == b.tcp && a.healthy == b.healthy && string(a.query) == string(b.query) &&
		a.sameTrigger(b)
}

// add starts checking a backend: up (the store's optimistic default) but
// without a verdict, first probe within one jittered interval.
func (c *Checker) add(name, pool string, addr netip.AddrPort, pp bool, set *settings, now int64) {
	b := &backend{
		name: name, pool: pool, addr: addr, addrText: addr.String(),
		match: netip.AddrPortFrom(addr.Addr().WithZone(""), addr.Port()), scope: zoneIndex(addr.Addr()), pp: pp,
		set: set, idx: -1, up: true, sentAt: neverSent,
	}
	b.obs = c.observer(name)
	b.obs.configure(set, c.epoch)
	c.backends[name] = b
	if c.running && b.wantsProbes() {
		c.schedule(b, now+int64(c.jitter(set.interval)))
	}
}

// remove forgets a backend; a probe in flight is abandoned and its answer,
// if one comes, is counted as unexpected.
func (c *Checker) remove(b *backend) {
	c.unschedule(b)
	if b.inflight {
		c.unpend(b)
		b.inflight = false
	}
	b.seq++ // a TCP probe still running finds it no longer current
	delete(c.backends, b.name)
}

// resettle gives an unchanged backend new settings; counters and verdict
// stay. A probe in flight finishes under the old timeout.
func (c *Checker) resettle(b *backend, set *settings, now int64) {
	old := b.set
	b.set = set
	if !old.sameTrigger(set) {
		b.obs.configure(set, c.epoch)
	}
	if !c.running || b.inflight {
		return
	}
	if !b.wantsProbes() {
		c.unschedule(b)
		return
	}
	// Re-spread rather than keep the old phase: a new interval would
	// otherwise leave every backend of the pool due at once.
	if !b.queued() || old.interval != set.interval {
		c.schedule(b, now+int64(c.jitter(set.interval)))
	}
}
