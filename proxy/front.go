package proxy

import "net/netip"

// verdict is what the shared front-end checks decided.
type verdict uint8

const (
	vForward  verdict = iota // send to the returned pool
	vReply                   // answer with the returned bytes
	vDrop                    // send nothing
	vPrefetch                // answer with the returned bytes and forward as a refresh
)

// front runs the checks every front end shares, so no transport can skip
// one: parse and validate, ACL, rules, cache. msg must already be parsed into
// v, with the parse error in parseErr; v.key receives the cache key.
// Replies are appended to out. vPrefetch answers from the cache and asks the
// caller to forward the query too, as a refresh whose answer only updates
// the cache.
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
	k := &v.key
	if c := pool.cache; c != nil {
		k.set(v)
		o, res, prefetch := c.answer(out, k, msg, v, p.now(), false)
		if res == cacheHit {
			c.hits.Add(1)
			if prefetch && len(pool.ups) > 0 {
				c.prefetches.Add(1)
				return vPrefetch, pool, o
			}
			return vReply, nil, o
		}
		c.misses.Add(1)
	}
	if len(pool.ups) == 0 {
		o, stale := p.failAnswer(pool, k, msg, v, out)
		if !stale {
			p.Stats.NoBackend.Add(1)
		}
		return vReply, nil, o
	}
	return vForward, pool, out
}

// failAnswer is the answer when no backend can give one: a stale cache
// entry if serve_stale allows one (RFC 8767), else SERVFAIL (which the
// caller counts by its reason). k must hold the query's key if the pool has
// a cache.
func (p *Proxy) failAnswer(pool *poolSnap, k *cacheKey, msg []byte, v *msgView, out []byte) ([]byte, bool) {
	if c := pool.cache; c != nil && c.cfg.ServeStale > 0 {
		if o, res, _ := c.answer(out, k, msg, v, p.now(), true); res != cacheMiss {
			c.stale.Add(1)
			return o, true
		}
	}
	return appendReply(out, msg, v, rcodeServFail), false
}
