package proxy

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/proxy/policy"
	"github.com/anyfront/anyfront/state"
)

const (
	// maxQuerySize bounds a UDP query: larger datagrams are cut by the
	// kernel, flagged MSG_TRUNC, and dropped as malformed.
	maxQuerySize = 4096
	// maxAnswerSize is the largest UDP answer a backend can send.
	maxAnswerSize = 65535
	// queryBatch and answerBatch are how many datagrams one wake-up takes.
	queryBatch  = 32
	answerBatch = 16
)

// udpListener is one shard's SO_REUSEPORT socket on one listen address.
type udpListener struct {
	fd   int
	v6   bool
	idx  int // index in Proxy.udpLns: slots name the socket to answer from
	addr netip.AddrPort
}

// shard is one worker's share of the UDP path: its in-flight table, its
// socket to the backends, and the goroutines that read its client sockets
// and that backend socket. Queries never cross shards, so the lock is
// contended only between a shard's own readers and its timeout loop.
type shard struct {
	p   *Proxy
	id  int
	mu  sync.Mutex
	tab *inflight
	bfd int  // the socket every backend is reached through
	bv6 bool // bfd is dual-stack AF_INET6
	// closing stops the backend loop, after the drain.
	closing atomic.Bool
	// errPending says a send under mu took an ICMP error off the backend
	// socket: the error queue has entries no reader was woken for.
	errPending atomic.Bool
	// expired is scratch space for the timeout loop.
	expired []int32
	// reply is scratch space for answers made under mu, wire for
	// retried queries that go out edited (PROXY header, ECS).
	reply []byte
	wire  []byte
	view  msgView
}

func newShard(p *Proxy, id, maxInflight int) (*shard, error) {
	fd, v6, err := backendSocket()
	if err != nil {
		return nil, err
	}
	return &shard{p: p, id: id, tab: newInflight(maxInflight), bfd: fd, bv6: v6, reply: make([]byte, 0, 1024), wire: make([]byte, 0, maxWireQuery)}, nil
}

// clientLoop reads queries from one listening socket until the proxy stops.
// One goroutine per socket, none per query; a wake-up handles every query
// queued, then sends the forwards and the local answers in one call each.
func (s *shard) clientLoop(l *udpListener) {
	rb := newRecvBatch(queryBatch, maxQuerySize)
	fwd := newSendBatch(queryBatch)
	rep := newSendBatch(queryBatch)
	if wildcard(l.addr) {
		rb.withPktinfo()
		rep.withPktinfo()
	}
	outs := make([][]byte, queryBatch)
	// wires hold queries that go out edited (PROXY header, ECS): each
	// stays untouched until the batch is flushed.
	wires := make([][]byte, queryBatch)
	for i := range outs {
		outs[i] = make([]byte, 0, 512)
		wires[i] = make([]byte, 0, maxWireQuery)
	}
	var v msgView
	for !s.p.stopping.Load() {
		n, err := rb.recv(l.fd)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR {
				s.p.Stats.ReadErrors.Add(1)
			}
			continue
		}
		for i := 0; i < n; i++ {
			msg, trunc := rb.msg(i)
			if trunc {
				s.p.Stats.MalformedShort.Add(1)
				continue
			}
			u, wire, out := s.handleQuery(l, msg, &rb.addrs[i], &v, outs[i][:0], wires[i][:0])
			outs[i] = out
			if u != nil {
				fwd.add(&u.sa, wire)
			}
			if len(out) > 0 {
				// Answers made here (cache hits, stale answers,
				// spoofs) obey the client's buffer like forwarded ones.
				if fit := fitUDP(out, v.maxUDPResponse()); fit != nil {
					if len(fit) < len(out) {
						s.p.Stats.Truncated.Add(1)
					}
					rep.add(&rb.addrs[i], fit)
					s.p.qlog.responseUDP(&rb.addrs[i], l.addr, fit)
				}
			}
		}
		if fwd.n > 0 {
			// A send the kernel refuses leaves its query to the timeout.
			failed, icmp := fwd.flush(s.bfd)
			s.p.Stats.SendErrors.Add(uint64(failed))
			if icmp || s.errPending.Swap(false) {
				// The send took an ICMP error meant for the backend
				// loop, which will not wake for it now: handle it here.
				readErrQueue(s.bfd, s.refused)
			}
		}
		if rep.n > 0 {
			failed, _ := rep.flush(l.fd)
			s.p.Stats.SendErrors.Add(uint64(failed))
		}
	}
}

// handleQuery validates one query, then records it in flight and returns
// the backend to send it to with the bytes to send (msg with its ID
// rewritten, or, when it goes out with a PROXY header or an ECS edit, a copy
// built in wire), and/or returns the answer to send back (empty: send
// nothing). A cache hit due for prefetch does both.
func (s *shard) handleQuery(l *udpListener, msg []byte, src *rawAddr, v *msgView, out, wire []byte) (*upstream, []byte, []byte) {
	p := s.p
	p.Stats.UDPQueries.Add(1)
	snap := p.snap.Load()
	err := v.parseQuery(msg)
	client := src.addrPort().Addr()
	p.qlog.queryUDP(src, l.addr, msg) // before the ID is rewritten
	vd, pool, out := p.frontOn(trUDP, snap, v, msg, err, client, out)
	if vd != vForward && vd != vPrefetch {
		return nil, nil, out
	}
	refresh := vd == vPrefetch
	h := policy.HashName(v.name())
	idx := pool.pol.Pick(h, 0)
	if idx < 0 {
		if refresh {
			return nil, nil, out
		}
		o, stale := p.failAnswer(pool, &v.key, msg, v, out)
		if !stale {
			p.Stats.NoBackend.Add(1)
		}
		return nil, nil, o
	}
	u := pool.ups[idx]

	s.mu.Lock()
	si := s.tab.alloc()
	if si < 0 {
		s.mu.Unlock()
		if refresh {
			return nil, nil, out
		}
		p.Stats.Shed.Add(1)
		return nil, nil, appendReply(out, msg, v, rcodeServFail)
	}
	sl := &s.tab.slots[si]
	now := p.now()
	sl.clientID = v.id
	sl.client = *src
	sl.ln = l.idx
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
	sl.refresh = refresh
	sl.ecs = v.ecs.mode
	s.tab.pushBack(si)
	if u.pp || v.ecs.mode != ecsNone {
		wire = appendWire(wire, u, src.addrPort(), l.addr, msg, v, sl.id)
	} else {
		binary.BigEndian.PutUint16(msg, sl.id)
		wire = msg
	}
	u.stats.Outstanding.Add(1)
	s.mu.Unlock()
	u.queries.Add(1)
	return u, wire, out
}

// backendLoop reads every backend's answers on this shard's socket, until
// the proxy has drained and closes the shard.
func (s *shard) backendLoop() {
	rb := newRecvBatch(answerBatch, maxAnswerSize)
	reps := make([]*msgBatch, len(s.p.udpLns))
	for i := range reps {
		reps[i] = newSendBatch(answerBatch)
		if wildcard(s.p.udpLns[i].addr) {
			reps[i].withPktinfo()
		}
	}
	var clients [answerBatch]rawAddr
	outs := make([][]byte, answerBatch) // for stale answers, rare: grown on demand
	var v, qv msgView
	for !s.closing.Load() {
		n, err := rb.recv(s.bfd)
		if err != nil {
			switch err {
			case unix.EAGAIN, unix.EINTR:
				if s.errPending.Swap(false) {
					readErrQueue(s.bfd, s.refused)
				}
			case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.EACCES:
				readErrQueue(s.bfd, s.refused)
			default:
				s.p.Stats.ReadErrors.Add(1)
			}
			continue
		}
		if s.errPending.Swap(false) {
			readErrQueue(s.bfd, s.refused)
		}
		for i := 0; i < n; i++ {
			msg, trunc := rb.msg(i)
			if trunc {
				s.p.Stats.UnexpectedAnswers.Add(1)
				continue
			}
			ln, out := s.handleAnswer(msg, rb.addrs[i].addrPort(), &v, &qv, &clients[i], outs[i][:0])
			if out != nil {
				reps[ln].add(&clients[i], out)
				s.p.qlog.responseUDP(&clients[i], s.p.udpLns[ln].addr, out)
			}
		}
		for i, rep := range reps {
			if rep.n > 0 {
				failed, _ := rep.flush(s.p.udpLns[i].fd)
				s.p.Stats.SendErrors.Add(uint64(failed))
			}
		}
	}
}

// refused handles an ICMP error for a datagram sent to dst: that backend is
// not answering, so every query waiting on it moves on now.
func (s *shard) refused(dst netip.AddrPort) {
	u := s.p.upstreamAt(dst)
	if u == nil {
		return
	}
	u.refusals.Add(1)
	u.obs.Observe(state.OutcomeUnreachable, 0)
	s.retryAllOf(u)
}

// handleAnswer matches one backend answer to its query and returns the
// listener to answer from and the answer, with client filled in; a nil
// answer sends nothing. The answer is msg itself, or a stale cache entry
// built in out when the backend said SERVFAIL. qv is scratch for the query.
func (s *shard) handleAnswer(msg []byte, from netip.AddrPort, v *msgView, qv *msgView, client *rawAddr, out []byte) (int, []byte) {
	p := s.p
	if len(msg) < headerLen {
		p.Stats.UnexpectedAnswers.Add(1)
		return 0, nil
	}
	s.mu.Lock()
	si := s.tab.lookup(binary.BigEndian.Uint16(msg))
	if si < 0 || s.tab.slots[si].up.addr != from {
		s.mu.Unlock()
		// Late (already answered or retried), forged, or from an
		// address we did not ask: not ours to use.
		p.Stats.UnexpectedAnswers.Add(1)
		return 0, nil
	}
	sl := &s.tab.slots[si]
	u := sl.up
	if err := matchResponse(msg, v, sl.query[headerLen:sl.qEnd]); err != nil {
		u.badAnswer.Add(1)
		u.obs.Observe(state.OutcomeBadAnswer, 0)
		if err == errTruncatedMsg || v.flags&flagQR != 0 && v.qdcount == 0 {
			// A header-only NOERROR/NXDOMAIN is a broken backend:
			// try another one now.
			s.retry(si)
		}
		// A wrong question may be a spoofing attempt: keep waiting for
		// the real answer.
		s.mu.Unlock()
		return 0, nil
	}
	// Restore the client's ID and question bytes (its case included).
	binary.BigEndian.PutUint16(msg, sl.clientID)
	if v.qEnd > headerLen {
		copy(msg[headerLen:v.qEnd], sl.query[headerLen:sl.qEnd])
	}
	*client = sl.client
	ln, limit, pool, refresh, mode := sl.ln, sl.maxUDP, sl.pool, sl.refresh, sl.ecs
	if pool.cache != nil {
		// The key comes from the client's query, parsed now while the
		// slot still holds it.
		if qv.parseQuery(sl.query) == nil {
			qv.planECS(&pool.ecs, sl.query, client.addrPort().Addr())
			qv.key.set(qv)
		} else {
			pool = &poolSnap{} // cannot happen: it parsed on the way in
		}
	}
	now := p.now()
	rtt := now - sl.sent
	u.stats.Outstanding.Add(-1)
	s.tab.release(si)
	s.mu.Unlock()

	u.answers.Add(1)
	observeLatency(u, rtt)
	u.obs.Observe(outcomeOf(v.rcode()), rtt/1000)
	scope, scopeOK := -1, true
	if mode != ecsNone {
		var n int
		n, scope, scopeOK = stripECS(msg, v, mode)
		msg = msg[:n]
	}
	if c := pool.cache; c != nil {
		if v.rcode() == rcodeServFail && !refresh {
			if o, stale := p.failAnswer(pool, &qv.key, msg, qv, out); stale {
				if o = fitUDP(o, limit); o == nil {
					return 0, nil
				}
				p.observeAnswer(client.addrPort().Addr(), o)
				return ln, o
			}
		}
		if mode != ecsNone {
			qv.key.scoped(qv.ecs.source(), scope, scopeOK)
		}
		c.store(&qv.key, msg, now)
	}
	if refresh {
		return 0, nil
	}
	n := len(msg)
	if n > limit {
		if n = truncateTo(msg, v, limit); n == 0 {
			p.Stats.SendErrors.Add(1)
			return 0, nil
		}
		p.Stats.Truncated.Add(1)
	}
	p.Stats.countRcode(v.rcode())
	p.observeAnswer(client.addrPort().Addr(), msg[:n])
	return ln, msg[:n]
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
	for sl.attempts <= snap.retries {
		idx := sl.pool.pol.Pick(sl.hash, sl.tried)
		if idx < 0 {
			break
		}
		u := sl.pool.ups[idx]
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
		q := sl.query
		if u.pp || sl.ecs != ecsNone {
			q = s.retryWire(sl, u)
		} else {
			binary.BigEndian.PutUint16(sl.query, sl.id)
		}
		icmp, err := sendTo(s.bfd, &u.sa, q)
		binary.BigEndian.PutUint16(sl.query, sl.clientID)
		if icmp {
			// Under s.mu the queue cannot be read here (refused locks
			// it): leave it to the next reader.
			s.errPending.Store(true)
		}
		if err == nil {
			return
		}
		// Refused at once too: on to the next, within the budget.
		u.stats.Outstanding.Add(-1)
		p.Stats.SendErrors.Add(1)
	}
	s.servfail(si)
}

// servfail answers the slot's client with a stale cache entry or SERVFAIL
// once every attempt failed, and frees the slot.
func (s *shard) servfail(si int32) {
	sl := &s.tab.slots[si]
	v := &s.view
	if !sl.refresh && v.parseQuery(sl.query) == nil {
		if sl.pool.cache != nil {
			v.planECS(&sl.pool.ecs, sl.query, sl.client.addrPort().Addr())
			v.key.set(v)
		}
		var stale bool
		s.reply, stale = s.p.failAnswer(sl.pool, &v.key, sl.query, v, s.reply[:0])
		if !stale {
			s.p.Stats.ServFail.Add(1)
		}
		fit := fitUDP(s.reply, sl.maxUDP)
		if _, err := sendTo(s.p.udpLns[sl.ln].fd, &sl.client, fit); err != nil {
			s.p.Stats.SendErrors.Add(1)
		}
		s.p.qlog.responseUDP(&sl.client, s.p.udpLns[sl.ln].addr, fit)
	}
	s.tab.release(si)
}

// retryWire builds the slot's query as it goes to u in s.wire: the edits
// are redone from the client's query, which the slot keeps as it came.
// Called with s.mu held.
func (s *shard) retryWire(sl *slot, u *upstream) []byte {
	v := &s.view
	if v.parseQuery(sl.query) != nil {
		v.ecs.mode = ecsNone // cannot happen: it parsed on the way in
	} else {
		v.planECS(&sl.pool.ecs, sl.query, sl.client.addrPort().Addr())
	}
	s.wire = appendWire(s.wire[:0], u, sl.client.addrPort(), s.p.udpLns[sl.ln].addr, sl.query, v, sl.id)
	return s.wire
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

func (s *shard) inflight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tab.n
}

func (s *shard) close() {
	if s.bfd >= 0 {
		unix.Close(s.bfd)
		s.bfd = -1
	}
}
