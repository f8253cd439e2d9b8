package proxy

import (
	"github.com/anyfront/anyfront/config"
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
	set, routes := snap.rules, snap.ruleRoutes
	src.RuleFree = func(name []byte, qtype uint16) bool {
		for i := range routes {
			r := set.At(i)
			// A rule forwarding to the default pool itself, its cache
			// included, ends where no rule would have: the same answer.
			if r.Forwards() && routes[i].pool == def {
				continue
			}
			if r.MayMatch(name, qtype) {
				return false
			}
		}
		return true
	}
	return src
}
