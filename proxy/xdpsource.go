package proxy

import (
	"slices"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/xdppublish"
)

// xdpSource is what the XDP answer publisher may publish from under snap,
// built from cfg: the default pool's cache, the ACL, and which names no
// rule could touch (XDP sees neither rules nor dynamic blocks).
func xdpSource(cfg *config.Config, snap *snapshot) xdppublish.Source {
	src := xdppublish.Source{Config: cfg, ACL: snap.acl}
	def := snap.def
	if def == nil || def.cache == nil {
		return src
	}
	src.Cache = def.cache
	if pc := cfg.Pools[def.name]; pc != nil && (pc.ECS.Add || pc.ECS.Override) {
		// Its answers depend on the client's subnet, which XDP does
		// not look at.
		src.ClientSubnet = true
	}
	rules := snap.rules
	src.RuleFree = func(name []byte, qtype uint16) bool {
		for i := range rules {
			r := &rules[i]
			// A rule forwarding to the default pool itself, its cache
			// included, ends where no rule would have: the same answer.
			if r.kind == actForward && r.pool == def {
				continue
			}
			if r.mayMatch(name, qtype) {
				return false
			}
		}
		return true
	}
	return src
}

// mayMatch says whether m could match a UDP query of opcode QUERY for name
// (lowercase wire format) and qtype from some client: it answers false
// only when a condition on the name, type, opcode or transport rules the
// query out whoever sends it.
func (m *matcher) mayMatch(name []byte, qtype uint16) bool {
	if m.opcodes != 0 && m.opcodes&1 == 0 {
		return false
	}
	if len(m.qtypes) > 0 && !slices.Contains(m.qtypes, qtype) {
		return false
	}
	if m.transports != 0 && m.transports&dnswire.UDP == 0 {
		return false
	}
	if !m.names.empty() && !m.names.has(name) {
		return false
	}
	if !m.suffixes.empty() && !m.suffixes.hasSuffixOf(name) {
		return false
	}
	for i := range m.all {
		if !m.all[i].mayMatch(name, qtype) {
			return false
		}
	}
	if len(m.any) > 0 && !slices.ContainsFunc(m.any, func(a matcher) bool { return a.mayMatch(name, qtype) }) {
		return false
	}
	// A negation may hold for some client or coin toss: assume it does.
	return true
}
