package proxy

import (
	"net/netip"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/pcache"
	"github.com/anyfront/anyfront/proxy/rules"
)

// verdict is what the shared front-end checks decided.
type verdict uint8

const (
	vForward  verdict = iota // send to the returned pool
	vReply                   // answer with the returned bytes
	vDrop                    // send nothing
	vPrefetch                // answer with the returned bytes and forward as a refresh
)

// frontOn runs the checks every front end shares, so no transport can skip
// one: dynamic blocks, parse and validate, ACL, rules, cache, for a query
// that came over tr. msg must already be parsed into v, with the parse error
// in parseErr; v.key receives the cache key. Replies are appended to out.
// vPrefetch answers from the cache and asks the caller to forward the query
// too, as a refresh whose answer only updates the cache. A blocked source
// gets nothing (or REFUSED), and every answer made here is measured for the
// dynamic block detectors.
func (p *Proxy) frontOn(tr dnswire.Transport, snap *snapshot, v *msgView, msg []byte, parseErr error, client netip.Addr, out []byte) (verdict, *poolSnap, []byte) {
	if parseErr == nil {
		p.top.Observe(client, v.Name())
	}
	dyn := p.dyn
	if !dyn.On() {
		return p.frontChecks(tr, snap, v, msg, parseErr, client, out)
	}
	if blocked, refuse := dyn.Admit(client, p.now()); blocked {
		if refuse && (parseErr == nil || parseErr == dnswire.ErrOpcode || parseErr == dnswire.ErrQDCount) {
			return vReply, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeRefused)
		}
		return vDrop, nil, out
	}
	start := len(out)
	vd, pool, o := p.frontChecks(tr, snap, v, msg, parseErr, client, out)
	if (vd == vReply || vd == vPrefetch) && len(o) >= start+dnswire.HeaderLen {
		dyn.Observe(client, int(o[start+3]&0xF), len(o)-start, p.now())
	}
	return vd, pool, o
}

func (p *Proxy) frontChecks(tr dnswire.Transport, snap *snapshot, v *msgView, msg []byte, parseErr error, client netip.Addr, out []byte) (verdict, *poolSnap, []byte) {
	if !p.aclAllows(snap, client) {
		p.stats.ACLRefused.Add(1)
		if parseErr != nil && parseErr != dnswire.ErrOpcode && parseErr != dnswire.ErrQDCount {
			return vDrop, nil, out // never answer garbage from strangers
		}
		return vReply, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeRefused)
	}
	switch parseErr {
	case nil:
	case dnswire.ErrOpcode: // other opcodes: NOTIMP below unless a rule takes them
		if v.QEnd == dnswire.HeaderLen {
			// No question (RFC 8906 §3.1.4 judges the opcode first):
			// nothing for a rule to match or a backend to answer.
			p.stats.NotImp.Add(1)
			return vReply, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeNotImp)
		}
	case dnswire.ErrQDCount:
		p.stats.FormErr.Add(1)
		return vReply, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeFormErr)
	default:
		p.stats.countMalformed(parseErr)
		return vDrop, nil, out
	}
	pool := snap.def
	var r *rules.Rule
	if len(snap.ruleRoutes) > 0 {
		q := rules.Query{View: &v.View, Client: client.Unmap(), Transport: tr}
		r = snap.rules.Eval(&q, p.log, p.now())
	}
	switch {
	case r == nil && parseErr == dnswire.ErrOpcode:
		p.stats.NotImp.Add(1)
		return vReply, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeNotImp)
	case r == nil:
	case r.Forwards() && parseErr == dnswire.ErrOpcode:
		pool = snap.ruleRoutes[r.Index()].uncached
	case r.Forwards():
		pool = snap.ruleRoutes[r.Index()].pool
	default:
		vd, o := p.ruleAnswer(r, tr, msg, v, out)
		return vd, nil, o
	}
	k := &v.key
	if parseErr == dnswire.ErrOpcode {
		// The cache key has no opcode: only QUERY answers are cached.
		if len(pool.ups) == 0 {
			p.stats.NoBackend.Add(1)
			return vReply, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeServFail)
		}
		return vForward, pool, out
	}
	v.PlanECS(&pool.ecs, msg, client)
	if c := pool.cache; c != nil {
		k.Set(&v.View)
		start := len(out)
		o, res, prefetch := c.Answer(out, k, msg, &v.View, p.now(), false)
		if res == pcache.Hit {
			o = pcache.WithCookie(o, start, msg, &v.View, client, p.now())
			c.CountHit()
			if prefetch && len(pool.ups) > 0 {
				c.CountPrefetch()
				return vPrefetch, pool, o
			}
			return vReply, nil, o
		}
		c.CountMiss()
	}
	if len(pool.ups) == 0 {
		o, stale := p.failAnswer(pool, k, msg, v, out)
		if !stale {
			p.stats.NoBackend.Add(1)
		}
		return vReply, nil, o
	}
	return vForward, pool, out
}

// failAnswer is the answer when no backend can give one: a stale cache
// entry if serve_stale allows one (RFC 8767), else SERVFAIL (which the
// caller counts by its reason). k must hold the query's key if the pool has
// a cache.
func (p *Proxy) failAnswer(pool *poolSnap, k *pcache.Key, msg []byte, v *msgView, out []byte) ([]byte, bool) {
	if c := pool.cache; c != nil && c.Config().ServeStale > 0 {
		if o, res, _ := c.Answer(out, k, msg, &v.View, p.now(), true); res != pcache.Miss {
			c.CountStale()
			return o, true
		}
	}
	return dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeServFail), false
}

// msgView is a query or answer as the core reads it: the wire view, and the
// packet cache key, filled only when a cache is consulted.
type msgView struct {
	dnswire.View
	key pcache.Key
}
