package proxy

import (
	"net/netip"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/tcppool"

	"github.com/anyfront/anyfront/proxy/policy"
	"github.com/anyfront/anyfront/state"
)

// answerTCPFrom validates one query from a stream client that connected to
// local (zero when unknown, which PROXY headers to backends then name) and
// returns the answer to send, or nil to send nothing. Every stream transport
// comes through here, so here is where the query log sees them.
func (p *Proxy) answerTCPFrom(msg []byte, client, local netip.AddrPort, tr dnswire.Transport) []byte {
	p.qlog.Query(tr, client, local, msg)
	resp := p.answerStream(msg, client, local, tr)
	p.qlog.Response(tr, client, local, resp)
	return resp
}

func (p *Proxy) answerStream(msg []byte, client, local netip.AddrPort, tr dnswire.Transport) []byte {
	v := new(msgView)
	snap := p.snap.Load()
	err := v.ParseQuery(msg)
	vd, pool, out := p.frontOn(tr, snap, v, msg, err, client.Addr(), nil)
	switch vd {
	case vReply:
		return out
	case vDrop:
		return nil
	case vPrefetch:
		// Answer from the cache now; refresh it in the background.
		q := append([]byte(nil), msg...)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			rv := new(msgView)
			if rv.ParseQuery(q) == nil {
				rv.PlanECS(&pool.ecs, q, client.Addr())
				rv.key.Set(&rv.View)
				p.forwardTCP(snap, pool, q, rv, true, client, local)
			}
		}()
		return out
	}
	resp := p.forwardTCP(snap, pool, msg, v, false, client, local)
	p.observeAnswer(client.Addr(), resp)
	return resp
}

// tcpMinAttempt is the shortest a TCP attempt is given before the query
// moves on: Linux's minimum TCP retransmission timeout.
const tcpMinAttempt = int64(200 * time.Millisecond)

// forwardTCP sends a query over TCP to the pool's backends, retrying on
// another one on failure, and returns the answer for the client: the
// backend's, a stale cache entry, or SERVFAIL. A refresh only updates the
// cache. client and local go into PROXY headers; v.ecs says the ECS edit.
func (p *Proxy) forwardTCP(snap *snapshot, pool *poolSnap, msg []byte, v *msgView, refresh bool, client, local netip.AddrPort) []byte {
	h := policy.HashName(v.Name())
	question := msg[dnswire.HeaderLen:v.QEnd]
	fwd := msg
	if v.ECS.Mode != dnswire.ECSNone {
		fwd = dnswire.AppendForward(make([]byte, 0, len(msg)+dnswire.ECSMaxGrowth), msg, &v.View)
	}
	// The deadline and attempt timeouts work as on UDP (fate.go), but an
	// attempt given up here is given up: a TCP exchange waits for its own
	// answer, so a late one is not heard. The first attempt may be hedged
	// (hedgeTCP).
	start := p.now()
	deadline := start + snap.deadline
	// refused marks the backends that refused this query or broke its
	// connection: unlike a slow one, they are not tried again.
	var tried, lastBit, refused uint64
	for attempt := 0; attempt <= snap.retries; attempt++ {
		idx := pool.pol.Pick(h, tried)
		if idx < 0 && attempt > 0 {
			// Every usable backend tried: again, but not the last one
			// where another is left.
			if tried = lastBit | refused; pool.pol.Pick(h, tried) < 0 {
				tried = refused
			}
			idx = pool.pol.Pick(h, tried)
		}
		if idx < 0 {
			break
		}
		now := p.now()
		left := deadline - now
		if left <= 0 {
			break
		}
		lastBit = 1 << (uint(idx) % 64)
		tried |= lastBit
		u := pool.ups[idx]
		wait := left
		if attempt < snap.retries {
			// A lost segment costs TCP its own retransmission (200 ms
			// at least on Linux), and an attempt given up loses its
			// answer: no TCP attempt is cut shorter than that.
			wait = min(left, max(u.rtt.RTO(snap.rtoFloor, snap.rtoCeil), tcpMinAttempt))
		}
		if attempt > 0 {
			p.stats.Retries.Add(1)
		}
		u.queries.Add(1)
		u.stats.Outstanding.Add(1)
		sent := now
		var resp []byte
		var err error
		if after := pool.lat.HedgeAfter(); attempt == 0 && pool.hedge && len(pool.ups) > 1 && after > 0 && after < wait {
			first := u
			u, sent, resp, err = p.hedgeTCP(pool, h, &tried, u, fwd, wait, after, client, local)
			first.stats.Outstanding.Add(-1)
		} else {
			resp, _, err = u.tcp.Exchange(fwd, time.Duration(wait), client, local)
			u.stats.Outstanding.Add(-1)
		}
		if err != nil {
			if err == tcppool.ErrBackendBusy {
				// anyfront's own bound, not the backend's failure: no
				// health outcome, on to the next backend.
				continue
			}
			if err == tcppool.ErrTimeout {
				p.stats.Timeouts.Add(1)
				if wait < left {
					u.retransmits.Add(1) // merely slow so far: no health outcome
					continue
				}
				u.timeouts.Add(1)
				u.obs.Observe(state.OutcomeTimeout, 0)
			} else {
				refused |= lastBit
				u.refusals.Add(1)
				u.obs.Observe(state.OutcomeUnreachable, 0)
			}
			continue
		}
		var rv msgView
		if dnswire.MatchResponse(resp, &rv.View, question) != nil {
			u.badAnswer.Add(1)
			u.obs.Observe(state.OutcomeBadAnswer, 0)
			continue
		}
		now = p.now()
		u.answered(pool, now, now-sent, true, rv.Rcode())
		restoreQuery(resp, &rv.View, v.ID, question)
		resp, _ = p.acceptAnswer(pool, v, v.ECS.Mode, resp, &rv.View, refresh, nil, now)
		return resp
	}
	if p.now() >= deadline {
		p.stats.DeadlinePassed.Add(1)
	}
	if refresh {
		return nil
	}
	out, stale := p.failAnswer(pool, &v.key, msg, v, nil)
	if !stale {
		p.stats.ServFail.Add(1)
	}
	return out
}

// hedgeTCP is a first TCP attempt at u that, unanswered after after
// nanoseconds, is copied to another backend within the pool's hedging
// budget; the first answer of the two wins and the other is forgotten. It
// returns the backend that answered (or failed) and when its copy went.
// u's outstanding count is the caller's; the hedge's is kept here.
func (p *Proxy) hedgeTCP(pool *poolSnap, h uint64, tried *uint64, u *upstream, fwd []byte, wait, after int64, client, local netip.AddrPort) (*upstream, int64, []byte, error) {
	sent := p.now()
	deadline := time.Now().Add(time.Duration(wait))
	w1, err := u.tcp.Start(fwd, deadline, client, local)
	if err != nil {
		return u, sent, nil, err
	}
	t := time.NewTimer(time.Duration(after))
	defer t.Stop()
	select {
	case resp := <-w1.C():
		if resp == nil {
			return u, sent, nil, tcppool.ErrConnLost
		}
		return u, sent, resp, nil
	case <-t.C:
	}
	var w2 tcppool.Wait
	hedged := false
	var u2 *upstream
	var sent2 int64
	if idx := pool.pol.Pick(h, *tried); idx < 0 {
		// nowhere to hedge to
	} else if !pool.lat.Spend() {
		p.stats.HedgesDenied.Add(1)
	} else {
		u2 = pool.ups[idx]
		*tried |= 1 << (uint(idx) % 64)
		u2.queries.Add(1)
		u2.hedges.Add(1)
		p.stats.Hedges.Add(1)
		sent2 = p.now()
		if w2, err = u2.tcp.Start(fwd, deadline, client, local); err != nil {
			u2.refusals.Add(1)
			u2.obs.Observe(state.OutcomeUnreachable, 0)
		} else {
			hedged = true
			u2.stats.Outstanding.Add(1)
		}
	}
	var c2 <-chan []byte
	if hedged {
		c2 = w2.C()
		defer u2.stats.Outstanding.Add(-1)
	}
	t.Reset(time.Until(deadline))
	c1 := w1.C()
	for c1 != nil || c2 != nil {
		select {
		case resp := <-c1:
			if resp != nil {
				if hedged {
					w2.Forget()
				}
				return u, sent, resp, nil
			}
			c1 = nil
		case resp := <-c2:
			if resp != nil {
				w1.Forget()
				return u2, sent2, resp, nil
			}
			c2 = nil
		case <-t.C:
			w1.Forget()
			if hedged {
				w2.Forget()
			}
			return u, sent, nil, tcppool.ErrTimeout
		}
	}
	return u, sent, nil, tcppool.ErrConnLost
}
