package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// pools decodes the pools mapping, keeping file order in PoolNames. A pool
// with problems is still recorded, so a rule naming it is not also
// reported as naming a missing pool.
func (d *decoder) pools(top fieldSet, cfg *Config) {
	n := top.get("pools")
	if n == nil {
		d.errorAt(top.keyLine("pools"), "pools: at least one pool is required")
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "pools: expected a mapping of pool names to pools, got %s", describe(n))
		return
	}
	// Backend names are unique across all pools: the admin API and the
	// metrics address a backend by name alone.
	backendLines := map[string]int{}
	for _, p := range d.pairs(n, "pools") {
		name := p.key.Value
		if first, dup := cfg.Pools[name]; dup {
			d.errorf(p.key, "pools: duplicate pool name %q (first at line %d)", name, first.Line)
			continue
		}
		d.name(p.key, "pools", name)
		pool := d.pool(name, p.key, resolve(p.val), backendLines)
		cfg.Pools[name] = pool
		cfg.PoolNames = append(cfg.PoolNames, name)
	}
	if len(cfg.PoolNames) == 0 {
		d.errorf(n, "pools: at least one pool is required")
	}
}

func (d *decoder) pool(name string, key, n *yaml.Node, backendLines map[string]int) *Pool {
	where := "pools." + name
	pool := &Pool{Name: name, Policy: defaultPolicy, HealthCheck: defaultHealthCheck(), Cache: defaultCache(), Hedge: defaultHedge(), Line: key.Line}
	if isNull(n) {
		d.errorf(key, "%s: a pool needs at least one backend", where)
		return pool
	}
	f, ok := d.fields(n, where, "policy", "backends", "healthcheck", "cache", "ecs", "hedge")
	if !ok {
		return pool
	}
	f.enum("policy", "policy", policies, &pool.Policy)
	items, ok := f.list("backends")
	if f.get("backends") == nil || ok && len(items) == 0 {
		d.errorAt(f.keyLine("backends"), "%s: a pool needs at least one backend", where)
	}
	for i, it := range items {
		if b, ok := d.backend(it, index(where+".backends", i), i, backendLines); ok {
			pool.Backends = append(pool.Backends, b)
		}
	}
	if h := f.get("healthcheck"); h != nil {
		d.healthCheck(h, where+".healthcheck", &pool.HealthCheck)
	}
	if c := f.get("cache"); c != nil {
		d.cache(c, where+".cache", &pool.Cache)
	}
	if e := f.get("ecs"); e != nil {
		d.ecs(e, where+".ecs", &pool.ECS)
	}
	if h := f.get("hedge"); h != nil {
		d.hedge(h, where+".hedge", &pool.Hedge)
	}
	return pool
}

// hedge decodes a pool's hedge: {enabled, percentile, budget}.
func (d *decoder) hedge(n *yaml.Node, where string, h *Hedge) {
	f, ok := d.fields(n, where, "enabled", "percentile", "budget")
	if !ok {
		return
	}
	f.bool("enabled", &h.Enabled)
	f.float("percentile", 50, 99.9, &h.Percentile)
	f.float("budget", 0, maxHedgeBudget, &h.Budget)
}

func (d *decoder) backend(n *yaml.Node, where string, i int, lines map[string]int) (Backend, bool) {
	b := Backend{Weight: 1, Order: i + 1, Line: n.Line}
	f, ok := d.fields(n, where, "name", "address", "weight", "order", "proxy_protocol")
	if !ok {
		return b, false
	}
	good := true
	if nn := f.require("name"); nn == nil || !f.str("name", &b.Name) || !d.name(nn, f.at("name"), b.Name) {
		good = false
	} else if first, dup := lines[b.Name]; dup {
		d.errorf(nn, "%s: duplicate backend name %q (first at line %d; names are unique across all pools)", f.at("name"), b.Name, first)
		good = false
	} else {
		lines[b.Name] = nn.Line
	}
	if a := f.require("address"); a != nil {
		var ok bool
		if b.Address, ok = d.unicastAddrPort(a, f.at("address")); !ok {
			good = false
		}
	} else {
		good = false
	}
	f.int("weight", 1, noMax, &b.Weight)
	f.int("order", 1, noMax, &b.Order)
	f.bool("proxy_protocol", &b.ProxyProtocol)
	return b, good
}

func (d *decoder) healthCheck(n *yaml.Node, where string, h *HealthCheck) {
	f, ok := d.fields(n, where, "qname", "qtype", "interval", "timeout", "rise", "fall", "mode", "rcodes", "tcp",
		"failure_ratio", "window", "min_samples")
	if !ok {
		return
	}
	if q := f.get("qname"); q != nil {
		if s, ok := d.domain(q, f.at("qname")); ok {
			h.QName = s
		}
	}
	if q := f.get("qtype"); q != nil {
		if t, ok := d.qtype(q, f.at("qtype")); ok {
			h.QType = t
		}
	}
	intervalOK := f.get("interval") == nil || f.duration("interval", true, &h.Interval)
	timeoutOK := f.get("timeout") == nil || f.duration("timeout", true, &h.Timeout)
	if intervalOK && timeoutOK && h.Timeout >= h.Interval {
		// A probe still waiting when the next is due would overlap it; the
		// checker keeps one probe in flight per backend.
		d.errorAt(f.keyLine("timeout"), "%s: timeout (%s) must be shorter than interval (%s)", where, h.Timeout, h.Interval)
	}
	f.int("rise", 1, noMax, &h.Rise)
	f.int("fall", 1, noMax, &h.Fall)
	f.enum("mode", "healthcheck mode", healthModes, &h.Mode)
	if items, ok := f.list("rcodes"); ok {
		if len(items) == 0 {
			d.errorf(f.get("rcodes"), "%s: needs at least one rcode", f.at("rcodes"))
		}
		var rcodes []int
		for _, it := range items {
			r, ok := d.rcode(it, f.at("rcodes"))
			if ok && r > maxProbeRcode {
				d.errorf(it, "%s: %s cannot be a probe's answer: probes carry no EDNS, so only rcodes 0-15 occur", f.at("rcodes"), it.Value)
				ok = false
			}
			if ok {
				rcodes = append(rcodes, r)
			}
		}
		if len(rcodes) > 0 {
			h.Rcodes = rcodes
		}
	}
	f.bool("tcp", &h.TCP)
	if n := f.get("failure_ratio"); n != nil {
		var r float64
		if f.float("failure_ratio", 0, 1, &r) {
			if r == 0 {
				// 0 would make every failure, however rare, a trigger.
				d.errorf(n, "%s: must be greater than 0", f.at("failure_ratio"))
			} else {
				h.FailureRatio = r
			}
		}
	}
	if n := f.get("window"); n != nil {
		var w time.Duration
		if f.duration("window", true, &w) {
			if w < minHealthWindow || w > maxHealthWindow {
				d.errorf(n, "%s: must be between %s and %s, got %s", f.at("window"), minHealthWindow, maxHealthWindow, w)
			} else {
				h.Window = w
			}
		}
	}
	f.int("min_samples", 1, noMax, &h.MinSamples)
}

func (d *decoder) cache(n *yaml.Node, where string, c *Cache) {
	f, ok := d.fields(n, where, "size", "serve_stale", "xdp_entries", "min_ttl", "max_ttl",
		"max_negative_ttl", "temporary_failure_ttl", "prefetch")
	if !ok {
		return
	}
	f.int("size", 0, maxCacheSize, &c.Size)
	f.duration("serve_stale", false, &c.ServeStale)
	f.int("xdp_entries", 0, MaxXDPEntries, &c.XDPEntries)
	f.duration("min_ttl", false, &c.MinTTL)
	f.duration("max_ttl", true, &c.MaxTTL)
	f.duration("max_negative_ttl", true, &c.MaxNegativeTTL)
	f.duration("temporary_failure_ttl", false, &c.TemporaryFailureTTL)
	f.bool("prefetch", &c.Prefetch)
	if c.MinTTL > c.MaxTTL {
		d.errorAt(f.keyLine("min_ttl"), "%s: min_ttl (%s) exceeds max_ttl (%s)", where, c.MinTTL, c.MaxTTL)
	}
	// Both features are views of the packet cache; without it they would
	// silently do nothing.
	if c.XDPEntries > c.Size {
		d.errorAt(f.keyLine("xdp_entries"), "%s: xdp_entries (%d) cannot exceed size (%d): XDP serves the hottest cached answers", where, c.XDPEntries, c.Size)
	}
	if c.ServeStale > 0 && c.Size == 0 {
		d.errorAt(f.keyLine("serve_stale"), "%s: serve_stale needs the cache (size > 0)", where)
	}
}

// ECS source prefixes by default, as RFC 7871 section 11.1 recommends: short
// enough not to identify a household.
const (
	defaultECSV4Prefix = 24
	defaultECSV6Prefix = 56
)

func (d *decoder) ecs(n *yaml.Node, where string, e *ECS) {
	*e = ECS{V4Prefix: defaultECSV4Prefix, V6Prefix: defaultECSV6Prefix}
	f, ok := d.fields(n, where, "add", "override", "v4_prefix", "v6_prefix")
	if !ok {
		return
	}
	f.bool("add", &e.Add)
	f.bool("override", &e.Override)
	f.int("v4_prefix", 0, 32, &e.V4Prefix)
	f.int("v6_prefix", 0, 128, &e.V6Prefix)
}
