package proxy

import "net/netip"

// verdict is what the shared front-end checks decided.
type verdict uint8

const (
	vForward verdict = iota // send to the returned pool
	vReply                  // answer with the returned bytes
	vDrop                   // send nothing
)

// front runs the checks every front end shares, so no transport can skip
// one: parse and validate, ACL, rules. msg must already be parsed into v by
// the caller's parseErr. Replies are appended to out.
func (p *Proxy) front(snap *snapshot, v *msgView, msg []byte, parseErr error, client netip.Addr, out []byte) (verdict, *poolSnap, []byte) {
	if !p.aclAllows(snap, client) {
		p.Stats.ACLRefused.Add(1)
		if parseErr != nil && parseErr != errOpcode && parseErr != errQDCount {
			return vDrop, nil, out // never answer garbage from strangers
		}
		return vReply, nil, appendReply(out, msg, v, rcodeRefused)
	}
	switch parseErr {
	case nil:
	case errQDCount:
		p.Stats.FormErr.Add(1)
		return vReply, nil, appendReply(out, msg, v, rcodeFormErr)
	case errOpcode:
		p.Stats.NotImp.Add(1)
		return vReply, nil, appendReply(out, msg, v, rcodeNotImp)
	default:
		p.Stats.countMalformed(parseErr)
		return vDrop, nil, out
	}
	pool := snap.def
	if r := matchRule(snap.rules, v, client); r != nil {
		switch r.kind {
		case actForward:
			pool = r.pool
		case actRefuse:
			p.Stats.RuleRefused.Add(1)
			return vReply, nil, appendReply(out, msg, v, rcodeRefused)
		case actDrop:
			p.Stats.RuleDropped.Add(1)
			return vDrop, nil, out
		case actSpoof:
			p.Stats.RuleSpoofed.Add(1)
			return vReply, nil, appendSpoof(out, msg, v, r)
		}
	}
	if len(pool.ups) == 0 {
		p.Stats.NoBackend.Add(1)
		return vReply, nil, appendReply(out, msg, v, rcodeServFail)
	}
	return vForward, pool, out
}
