package proxy

// The core's side of the rules and dynamic block rooms (proxy/rules,
// proxy/dynblock): where a rule's pool is in a snapshot, the counters of
// the answers rules make, the admin lists and the metrics.

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/dynblock"
	"github.com/anyfront/anyfront/proxy/rules"
)

// ruleRoute is where a forwarding rule sends queries in one snapshot:
// pool, and uncached, that pool without its cache, for queries whose
// answers must not be cached (opcodes other than QUERY: the cache key has
// none). A nocache rule's pool is the cache-less one already, so the hot
// path needs no check of its own.
type ruleRoute struct{ pool, uncached *poolSnap }

// ruleSetFor is cfg's compiled rules: the current snapshot's when it was
// built from the same config, so hit counters and rate limiters carry over
// a rebuild for a backend's change of state (no source gets a fresh
// burst); a new set, counting from 0, for a new config. Called from
// rebuild, with buildMu held.
func (p *Proxy) ruleSetFor(cfg *config.Config) *rules.Set {
	if prev := p.snap.Load(); prev != nil && prev.rules.Config() == cfg {
		return prev.rules
	}
	return rules.Compile(cfg)
}

// routeRules finds each forwarding rule's pool among a snapshot's pools. It
// returns nil, and no rule applies, while one of them is missing.
func (p *Proxy) routeRules(set *rules.Set, byName map[string]*poolSnap) []ruleRoute {
	routes := make([]ruleRoute, set.Len())
	for i := range routes {
		r := set.At(i)
		if !r.Forwards() {
			continue
		}
		ps := byName[r.Pool()]
		if ps == nil {
			// Config validation names only existing pools; a pool can
			// be missing only while state catches up with a reload.
			p.log.Warn("rules wait for their pools to reach the state store")
			return nil
		}
		rt := ruleRoute{pool: ps, uncached: ps}
		if ps.cache != nil {
			nc := *ps
			nc.cache = nil
			rt.uncached = &nc
		}
		if r.NoCache() {
			rt.pool = rt.uncached
		}
		routes[i] = rt
	}
	return routes
}

// ruleAnswer is what a rule that does not forward does to the query: the
// verdict and the answer appended to out. The rules room makes the answer;
// the core counts it.
func (p *Proxy) ruleAnswer(r *rules.Rule, tr dnswire.Transport, msg []byte, v *msgView, out []byte) (verdict, []byte) {
	o, out := r.Answer(tr, msg, &v.View, out)
	p.stats.RuleActions[o].Add(1)
	switch o {
	case rules.Refuse:
		p.stats.RuleRefused.Add(1)
	case rules.Spoof:
		p.stats.RuleSpoofed.Add(1)
	case rules.Drop:
		p.stats.RuleDropped.Add(1)
		return vDrop, out
	}
	return vReply, out
}

// RuleList lists the rules in force with their counters, in order, for
// GET /api/v1/rules; none before Run has built its first snapshot.
func (p *Proxy) RuleList() []rules.Status {
	snap := p.snap.Load()
	if snap == nil {
		return []rules.Status{}
	}
	return snap.rules.Status()
}

// BlockList lists the dynamic blocks in force, soonest to expire first,
// for GET /api/v1/blocks.
func (p *Proxy) BlockList() []dynblock.Status {
	return p.dyn.List(p.now())
}

// Unblock lifts the dynamic block on prefix (as listed by BlockList); it
// returns an error wrapping dynblock.ErrNoBlock when there is none, and no
// other: a Blocker that fails to lift it too is logged and counted.
func (p *Proxy) Unblock(prefix netip.Prefix) error {
	return p.dyn.Unblock(prefix, p.now())
}

// observeAnswer counts an answer sent to client for the dynamic block
// detectors (rcode and response bytes), where forwarded answers leave.
func (p *Proxy) observeAnswer(client netip.Addr, answer []byte) {
	if len(answer) < dnswire.HeaderLen || !p.dyn.On() {
		return
	}
	p.dyn.Observe(client, int(answer[3]&0xF), len(answer), p.now())
}

// collectRulesAndBlocks exports the rules' hit counters and the dynamic
// block counters.
func (p *Proxy) collectRulesAndBlocks(ch chan<- prometheus.Metric) {
	if snap := p.snap.Load(); snap != nil {
		snap.rules.Collect(ch)
	}
	p.dyn.Collect(ch)
}
