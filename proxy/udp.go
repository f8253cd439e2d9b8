package proxy

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/proxy/policy"
	"github.com/anyfront/anyfront/state"
)

// maxUDPMsg is the largest datagram read; anything longer is cut by the kernel
// and then fails validation.
const maxUDPMsg = 65535

// shard is one worker's share of the UDP path: its in-flight table, and the
// goroutines that read its client sockets and its backend sockets. Queries
// never cross shards, so the lock is contended only between a shard's own
// client and backend readers.
type shard struct {
	p   *Proxy
	id  int
	mu  sync.Mutex
	tab *inflight
	// expired is scratch space for the timeout loop.
	expired []int32
	// reply is scratch space for answers made under mu.
	reply []byte
	view  msgView
}

func newShard(p *Proxy, id, maxInflight int) *shard {
	return &shard{p: p, id: id, tab: newInflight(maxInflight), reply: make([]byte, 0, 1024)}
}

// clientLoop reads queries from one listening socket until it is closed or
// the proxy stops. One goroutine per socket, none per query.
func (s *shard) clientLoop(ln *net.UDPConn) {
	buf := make([]byte, maxUDPMsg)
	out := make([]byte, 0, 1024)
	var v msgView
	for {
		n, src, err := ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.p.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.p.Stats.ReadErrors.Add(1)
			continue
		}
		out = s.handleQuery(ln, buf[:n], src, &v, out[:0])
	}
}

// handleQuery validates one query, then forwards it or answers it. It returns
// out for reuse.
func (s *shard) handleQuery(ln *net.UDPConn, msg []byte, src netip.AddrPort, v *msgView, out []byte) []byte {
	p := s.p
	p.Stats.UDPQueries.Add(1)
	snap := p.snap.Load()
	err := v.parseQuery(msg)
	vd, pool, out := p.front(snap, v, msg, err, src.Addr(), out)
	switch vd {
	case vReply:
		s.send(ln, out, src)
		return out
	case vDrop:
		return out
	}
	h := policy.HashName(v.name())
	idx := pool.pol.Pick(h, 0)
	if idx < 0 {
		p.Stats.NoBackend.Add(1)
		out = appendReply(out, msg, v, rcodeServFail)
		s.send(ln, out, src)
		return out
	}
	u := pool.ups[idx]

	s.mu.Lock()
	si := s.tab.alloc()
	if si < 0 {
		s.mu.Unlock()
		p.Stats.Shed.Add(1)
		out = appendReply(out, msg, v, rcodeServFail)
		s.send(ln, out, src)
		return out
	}
	sl := &s.tab.slots[si]
	now := p.now()
	sl.clientID = v.id
	sl.client = src
	sl.ln = ln
	sl.up = u
	sl.pool = pool
	sl.hash = h
	sl.tried = 1 << (uint(idx) % 64)
	sl.attempts = 1
	sl.sent = now
	sl.deadline = now + snap.timeout
	sl.query = append(sl.query[:0], msg...)
	sl.qEnd = v.qEnd
	sl.maxUDP = v.maxUDPResponse()
	s.tab.pushBack(si)
	id := sl.id
	u.stats.Outstanding.Add(1)
	s.mu.Unlock()

	// Send from the reader's own buffer: the slot may be answered and
	// reused before Write returns.
	binary.BigEndian.PutUint16(msg, id)
	s.forward(u, msg, si, id)
	return out
}

// forward sends a query to a backend. A refusal (ICMP unreachable reported on
// the connected socket) sends the query on at once rather than waiting for
// the timeout.
func (s *shard) forward(u *upstream, msg []byte, si int32, id uint16) {
	u.queries.Add(1)
	_, err := u.conns[s.id].Write(msg)
	if err == nil {
		return
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		u.refusals.Add(1)
		u.obs.Observe(state.OutcomeUnreachable, 0)
	} else {
		s.p.Stats.SendErrors.Add(1)
	}
	s.mu.Lock()
	if s.tab.lookup(id) == si && s.tab.slots[si].up == u {
		s.retry(si)
	}
	s.mu.Unlock()
}

func (s *shard) send(ln *net.UDPConn, b []byte, to netip.AddrPort) {
	if _, err := ln.WriteToUDPAddrPort(b, to); err != nil {
		s.p.Stats.SendErrors.Add(1)
	}
}

// backendLoop reads one backend's answers on this shard's socket to it.
func (s *shard) backendLoop(u *upstream, c *net.UDPConn) {
	buf := make([]byte, maxUDPMsg)
	var v msgView
	for {
		n, err := c.Read(buf)
		if err != nil {
			if u.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				u.refusals.Add(1)
				u.obs.Observe(state.OutcomeUnreachable, 0)
				s.retryAllOf(u)
			}
			continue
		}
		s.handleAnswer(u, buf[:n], &v)
	}
}

func (s *shard) handleAnswer(u *upstream, msg []byte, v *msgView) {
	p := s.p
	if len(msg) < headerLen {
		u.badAnswer.Add(1)
		return
	}
	s.mu.Lock()
	si := s.tab.lookup(binary.BigEndian.Uint16(msg))
	if si < 0 || s.tab.slots[si].up != u {
		s.mu.Unlock()
		// Late (already answered or retried) or forged: not ours to use.
		p.Stats.UnexpectedAnswers.Add(1)
		return
	}
	sl := &s.tab.slots[si]
	if err := matchResponse(msg, v, sl.query[headerLen:sl.qEnd]); err != nil {
		u.badAnswer.Add(1)
		u.obs.Observe(state.OutcomeBadAnswer, 0)
		if v.flags&flagQR != 0 && v.qdcount == 0 {
			// A header-only NOERROR/NXDOMAIN is a broken backend:
			// try another one now.
			s.retry(si)
		}
		// A wrong question may be a spoofing attempt: keep waiting for
		// the real answer.
		s.mu.Unlock()
		return
	}
	// Restore the client's ID and question bytes (its case included).
	binary.BigEndian.PutUint16(msg, sl.clientID)
	if v.qEnd > headerLen {
		copy(msg[headerLen:v.qEnd], sl.query[headerLen:sl.qEnd])
	}
	client, ln, limit := sl.client, sl.ln, sl.maxUDP
	rtt := p.now() - sl.sent
	u.stats.Outstanding.Add(-1)
	s.tab.release(si)
	s.mu.Unlock()

	u.answers.Add(1)
	observeLatency(u, rtt)
	u.obs.Observe(outcomeOf(v.rcode()), rtt/1000)
	n := len(msg)
	if n > limit {
		if n = truncateTo(msg, v, limit); n == 0 {
			p.Stats.SendErrors.Add(1)
			return
		}
		p.Stats.Truncated.Add(1)
	}
	p.Stats.countRcode(v.rcode())
	s.send(ln, msg[:n], client)
}

func outcomeOf(rcode int) state.Outcome {
	if rcode == rcodeServFail {
		return state.OutcomeServFail
	}
	return state.OutcomeAnswer
}

// observeLatency folds one round trip into the backend's EWMA (weight 1/8,
// as TCP's SRTT). Concurrent updates may lose one sample; that is harmless.
func observeLatency(u *upstream, rtt int64) {
	u.latency.Observe(float64(rtt) / 1e9)
	us := rtt / 1000
	if us < 1 {
		us = 1
	}
	old := u.stats.LatencyUS.Load()
	if old == 0 {
		u.stats.LatencyUS.Store(us)
		return
	}
	u.stats.LatencyUS.Store(old + (us-old)/8)
}

// retry sends the query in slot si to another backend of its pool, or
// answers SERVFAIL when the retry budget or the pool is exhausted. Called
// with s.mu held.
func (s *shard) retry(si int32) {
	p := s.p
	sl := &s.tab.slots[si]
	sl.up.stats.Outstanding.Add(-1)
	snap := p.snap.Load()
	if sl.attempts <= snap.retries {
		if idx := sl.pool.pol.Pick(sl.hash, sl.tried); idx >= 0 {
			u := sl.pool.ups[idx]
			if !u.closed.Load() {
				now := p.now()
				sl.up = u
				sl.tried |= 1 << (uint(idx) % 64)
				sl.attempts++
				sl.sent = now
				sl.deadline = now + snap.timeout
				s.tab.unlink(si)
				s.tab.pushBack(si)
				u.stats.Outstanding.Add(1)
				u.queries.Add(1)
				p.Stats.Retries.Add(1)
				binary.BigEndian.PutUint16(sl.query, sl.id)
				_, err := u.conns[s.id].Write(sl.query)
				binary.BigEndian.PutUint16(sl.query, sl.clientID)
				if err == nil {
					return
				}
				// Refused at once too: out of budget or on to the next.
				u.refusals.Add(1)
				u.obs.Observe(state.OutcomeUnreachable, 0)
				s.retry(si)
				return
			}
		}
	}
	s.servfail(si)
}

// servfail answers the slot's client SERVFAIL and frees the slot.
func (s *shard) servfail(si int32) {
	sl := &s.tab.slots[si]
	v := &s.view
	if v.parseQuery(sl.query) == nil || v.qEnd > headerLen {
		s.reply = appendReply(s.reply[:0], sl.query, v, rcodeServFail)
		s.send(sl.ln, s.reply, sl.client)
	}
	s.p.Stats.ServFail.Add(1)
	s.tab.release(si)
}

// retryAllOf moves every query waiting on u elsewhere: u refused one of them,
// so it is not answering any.
func (s *shard) retryAllOf(u *upstream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for si := s.tab.head; si >= 0; {
		next := s.tab.slots[si].next
		if s.tab.slots[si].up == u {
			s.retry(si)
		}
		si = next
	}
}

// timeoutLoop retries or fails queries whose backend did not answer in time.
// It runs until stop closes, which Run does only after draining, so queries
// in flight at shutdown still get their retries.
func (s *shard) timeoutLoop(stop <-chan struct{}) {
	tick := s.p.cfg.Load().Proxy.Timeout / 20
	tick = min(max(tick, 10*time.Millisecond), 100*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			s.expire()
		}
	}
}

func (s *shard) expire() {
	now := s.p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	// Collect first: retry re-appends slots to the tail of the same list.
	s.expired = s.expired[:0]
	for si := s.tab.head; si >= 0 && s.tab.slots[si].deadline <= now; si = s.tab.slots[si].next {
		s.expired = append(s.expired, si)
	}
	for _, si := range s.expired {
		sl := &s.tab.slots[si]
		sl.up.timeouts.Add(1)
		sl.up.obs.Observe(state.OutcomeTimeout, 0)
		s.p.Stats.Timeouts.Add(1)
		s.retry(si)
	}
}
