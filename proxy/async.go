package proxy

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/proxy/policy"
	"github.com/anyfront/anyfront/proxy/stream"
)

// Stream queries without a goroutine each. A front end that serves many
// queries per connection on one goroutine (DoH over HTTP/2) hands each to
// answerAsync, which answers from the checks and the cache at once, or
// sends the query to a backend over UDP through a shard's in-flight table,
// exactly as a UDP client's: the same attempt timeouts, retries, hedging and
// deadline (fate.go), the answer read by the shard's backend loop. The slot
// names a stream.Waiter instead of a UDP client. A backend answer with TC
// set (it did not fit the query's UDP size) is fetched again over TCP, on a
// goroutine of its own: the rare large answer pays for a stream client's
// having no size limit.

// asyncBufs are answer buffers for checks and cache hits made on the
// caller's goroutine: the waiter copies what it keeps.
var asyncBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// answerAsync validates and answers one query from a stream client; the
// answer (nil for none) goes to w.
func (p *Proxy) answerAsync(msg []byte, client, local netip.AddrPort, tr dnswire.Transport, w stream.Waiter) {
	p.qlog.Query(tr, client, local, msg)
	if p.stopping.Load() {
		// The shards may be past their drain: no slot for it there.
		p.answerLater(msg, client, local, tr, w)
		return
	}
	var v msgView
	snap := p.snap.Load()
	err := v.ParseQuery(msg)
	bp := asyncBufs.Get().(*[]byte)
	defer asyncBufs.Put(bp)
	vd, pool, out := p.frontOn(tr, snap, &v, msg, err, client.Addr(), (*bp)[:0])
	*bp = out[:0]
	switch vd {
	case vReply:
		p.deliver(w, tr, client, local, out)
		return
	case vDrop:
		p.deliver(w, tr, client, local, nil)
		return
	case vPrefetch:
		p.deliver(w, tr, client, local, out)
		p.sendAsync(snap, pool, &v, msg, client, local, tr, nil)
		return
	}
	p.sendAsync(snap, pool, &v, msg, client, local, tr, w)
}

// sendAsync puts a query in flight on a shard for w; a nil w is a cache
// refresh, which answers no one.
func (p *Proxy) sendAsync(snap *snapshot, pool *poolSnap, v *msgView, msg []byte, client, local netip.AddrPort, tr dnswire.Transport, w stream.Waiter) {
	h := policy.HashName(v.Name())
	idx := pool.pol.Pick(h, 0)
	if idx < 0 {
		if w != nil {
			p.deliverMade(w, tr, client, local, func(out []byte) []byte {
				o, stale := p.failAnswer(pool, &v.key, msg, v, out)
				if !stale {
					p.stats.NoBackend.Add(1)
				}
				return o
			})
		}
		return
	}
	u := pool.ups[idx]
	s := p.shards[h%uint64(len(p.shards))]
	s.mu.Lock()
	si := s.tab.alloc()
	if si < 0 {
		s.mu.Unlock()
		if w != nil {
			p.stats.Shed.Add(1)
			p.deliverMade(w, tr, client, local, func(out []byte) []byte {
				return dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeServFail)
			})
		}
		return
	}
	sl := &s.tab.slots[si]
	sl.client = udpsock.AddrFrom(client, false)
	sl.ln = -1
	sl.maxUDP = dnswire.MaxMessage
	sl.wait, sl.local, sl.tr = w, local, tr
	s.track(si, snap, pool, u, idx, h, v, msg, w == nil, p.now())
	q := sl.query
	if u.pp || v.ECS.Mode != dnswire.ECSNone {
		q = s.retryWire(sl, u)
	} else {
		binary.BigEndian.PutUint16(q, sl.id)
	}
	u.stats.Outstanding.Add(1)
	u.queries.Add(1)
	// Sent under the lock, as a retry is: the slot's query buffer is the
	// shard's until then.
	_, err := udpsock.SendTo(s.bfd, &u.sa, q, s.drainFn)
	binary.BigEndian.PutUint16(sl.query, sl.clientID)
	if err != nil {
		p.stats.SendErrors.Add(1)
		sl.endAttempt(0)
		s.afterLoss(si, p.now())
	}
	s.mu.Unlock()
}

// deliver hands a stream query's answer to its waiter, logged as the
// synchronous path logs it.
func (p *Proxy) deliver(w stream.Waiter, tr dnswire.Transport, client, local netip.AddrPort, resp []byte) {
	p.qlog.Response(tr, client, local, resp)
	w.Answered(resp)
}

// deliver is Proxy.deliver in the backend loop, which writes a stream
// connection's answers once per batch of answers read.
func (s *shard) deliver(w stream.Waiter, tr dnswire.Transport, client, local netip.AddrPort, resp []byte) {
	bw, ok := w.(stream.BatchWaiter)
	if !ok || s.flushes == nil || len(s.flushes) == cap(s.flushes) {
		s.p.deliver(w, tr, client, local, resp)
		return
	}
	s.p.qlog.Response(tr, client, local, resp)
	if f := bw.Queue(resp); f != nil {
		s.flushes = append(s.flushes, f)
	}
}

// deliverMade delivers an answer that build appends to a pooled buffer:
// the rare local answers of sendAsync (no backend, table full).
func (p *Proxy) deliverMade(w stream.Waiter, tr dnswire.Transport, client, local netip.AddrPort, build func([]byte) []byte) {
	bp := asyncBufs.Get().(*[]byte)
	o := build((*bp)[:0])
	p.deliver(w, tr, client, local, o)
	*bp = o[:0]
	asyncBufs.Put(bp)
}

// answerLater answers on a goroutine of its own, over TCP to the
// backends: for the few queries that need it (a truncated UDP answer, a
// query read while the proxy stops).
func (p *Proxy) answerLater(msg []byte, client, local netip.AddrPort, tr dnswire.Transport, w stream.Waiter) {
	q := append([]byte(nil), msg...)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.deliver(w, tr, client, local, p.answerStream(q, client, local, tr))
	}()
}

// refetchTCP asks the pool's backends again over TCP for a stream query
// whose UDP answer came truncated.
func (p *Proxy) refetchTCP(pool *poolSnap, q []byte, client, local netip.AddrPort, tr dnswire.Transport, w stream.Waiter) {
	p.stats.TCPRefetches.Add(1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		var v msgView
		var resp []byte
		if v.ParseQuery(q) == nil {
			v.PlanECS(&pool.ecs, q, client.Addr())
			v.key.Set(&v.View)
			resp = p.forwardTCP(p.snap.Load(), pool, q, &v, false, client, local)
			p.observeAnswer(client.Addr(), resp)
		}
		p.deliver(w, tr, client, local, resp)
	}()
}
