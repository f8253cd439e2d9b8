package pcache

import "github.com/anyfront/anyfront/proxy/dnswire"

// With ECS (RFC 7871) an answer may hold for one client subnet only. A key
// whose query carries a subnet the proxy owns (added or replaced) goes on
// with that subnet and is "shared": after a miss, the key without it is
// looked up too, where answers of SCOPE 0 (valid for every subnet) live. A
// subnet the client sent itself, kept as it was, keys its answer alone.

// AppendECS adds the plan's ECS part to the key (Set calls it). The part
// ends in a tag byte that is never zero, so the key's last byte is no EDNS
// version and XDP's answer cache leaves such entries alone.
func (k *Key) AppendECS(p *dnswire.ECSPlan) {
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

// Scoped points k, the key of an owned-ECS query whose source prefix was
// source bits, at where its answer may be stored, given the answer's SCOPE
// (dnswire.StripECS's scope and ok).
func (k *Key) Scoped(source, scope int, ok bool) {
	switch {
	case !ok || scope > source:
		k.skip = true
	case scope <= 0:
		k.n, k.h, k.shared = k.base, k.hb, false
	}
}
