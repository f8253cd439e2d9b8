package proxy

import (
	"encoding/binary"

	"github.com/anyfront/anyfront/proxy/dnswire"
)

// The answer side of every transport, frontOn's twin: what a valid backend
// answer goes through before its client gets it, written once so that UDP
// and the stream transports cannot drift apart.

// restoreQuery gives a backend's answer (matched into rv) back the client's
// ID and question bytes, its case included (0x20 randomisation is the
// client's to check).
func restoreQuery(resp []byte, rv *dnswire.View, id uint16, question []byte) {
	binary.BigEndian.PutUint16(resp, id)
	if rv.QEnd > dnswire.HeaderLen {
		copy(resp[dnswire.HeaderLen:rv.QEnd], question)
	}
}

// answered records a valid answer of u's: counted, its outcome told to
// health, and its round trip folded into the estimators when sample says
// it can be told which send it answers.
func (u *upstream) answered(ps *poolSnap, now, rtt int64, sample bool, rcode int) {
	u.answers.Add(1)
	if sample {
		observeRTT(u, ps, now, rtt)
	}
	u.obs.Observe(outcomeOf(rcode), rtt/1000)
}

// acceptAnswer takes a backend's valid answer for the client whose query q
// went out under ECS mode: it removes the ECS anyfront added, keeps the
// answer in the pool's cache under q's key (scoped by the answer's ECS
// SCOPE), and counts its rcode. A SERVFAIL is answered from a stale entry
// instead when serve_stale allows one (appended to out; stale is true). A
// refresh only updates the cache and returns nil. resp is edited in place
// and returned; the caller fits it to the client's transport.
func (p *Proxy) acceptAnswer(pool *poolSnap, q *msgView, mode dnswire.ECSMode, resp []byte, rv *dnswire.View, refresh bool, out []byte, now int64) (ans []byte, stale bool) {
	scope, scopeOK := -1, true
	if mode != dnswire.ECSNone {
		var n int
		n, scope, scopeOK = dnswire.StripECS(resp, rv, mode)
		resp = resp[:n]
	}
	if c := pool.cache; c != nil {
		if rv.Rcode() == dnswire.RcodeServFail && !refresh {
			if o, stale := p.failAnswer(pool, &q.key, resp, q, out); stale {
				return o, true
			}
		}
		if mode != dnswire.ECSNone {
			q.key.Scoped(q.ECS.Source(), scope, scopeOK)
		}
		c.Store(&q.key, resp, now)
	}
	if refresh {
		return nil, false
	}
	p.stats.countRcode(rv.Rcode())
	return resp, false
}
