package proxy

import (
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

func newECSPolicy(c config.ECS) dnswire.ECSPolicy {
	return dnswire.ECSPolicy{Add: c.Add, Override: c.Override, V4: uint8(c.V4Prefix), V6: uint8(c.V6Prefix)}
}

// appendECS adds the plan's ECS part to a cache key (see the top of this
// file). The part ends in a tag byte that is never zero, so the key's last
// byte is no EDNS version and XDP's answer cache leaves such entries alone.
func (k *cacheKey) appendECS(p *dnswire.ECSPlan) {
	k.skip, k.shared = false, false
	var tag byte
	switch {
	case p.Client == dnswire.ECSClientBad:
		k.skip = true
		return
	case p.Mode != dnswire.ECSNone:
		tag, k.shared = 'S', true
	case p.Client == dnswire.ECSClientKept:
		tag = 'C'
	default:
		return
	}
	k.n += copy(k.buf[k.n:], p.Data[:p.DLen])
	k.buf[k.n] = tag
	k.n++
}

// scoped points k, the key of an owned-ECS query whose source prefix was
// source bits, at where its answer may be stored, given the answer's SCOPE
// (stripECS's scope and ok).
func (k *cacheKey) scoped(source, scope int, ok bool) {
	switch {
	case !ok || scope > source:
		k.skip = true
	case scope <= 0:
		k.n, k.h, k.shared = k.base, k.hb, false
	}
}
