package proxy

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/proxy/stream"

	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/proxy/policy"
)

const (
	// maxQuerySize bounds a UDP query: larger datagrams are cut by the
	// kernel, flagged MSG_TRUNC, and dropped as malformed.
	maxQuerySize = 4096
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
	// errPending says refusals were noted (refusedQ, under errMu) or the
	// socket reported an ICMP error: handleRefused has work.
	errPending atomic.Bool
	errMu      sync.Mutex
	refusedQ   []netip.AddrPort
	// drainFn is drainErrs, made once: the send path takes it without
	// allocating.
	drainFn func()
	// wake rouses the timeout loop, asleep while the table is empty.
	wake chan struct{}
	// expired is scratch space for the timeout loop.
	expired []int32
	// reply is scratch space for answers made under mu, wire for
	// retried queries that go out edited (PROXY header, ECS).
	reply []byte
	wire  []byte
	view  msgView
	// flushes are the stream connections that answers of the backend
	// loop's current batch were queued on, written once the batch is
	// done (nil outside the loop: answers are written at once). Only the
	// backend loop touches it.
	flushes []stream.Flusher
}

func newShard(p *Proxy, id, maxInflight int) (*shard, error) {
	fd, v6, err := udpsock.BackendSocket()
	if err != nil {
		return nil, err
	}
	s := &shard{p: p, id: id, tab: newInflight(maxInflight), bfd: fd, bv6: v6, reply: make([]byte, 0, 1024), wire: make([]byte, 0, maxWireQuery),
		refusedQ: make([]netip.AddrPort, 0, refusedMax), wake: make(chan struct{}, 1), expired: make([]int32, 0, 256)}
	s.drainFn = s.drainErrs
	return s, nil
}

// clientLoop reads queries from one listening socket until the proxy stops.
// One goroutine per socket, none per query; a wake-up handles every query
// queued, then sends the forwards and the local answers in one call each.
func (s *shard) clientLoop(l *udpListener) {
	rb := udpsock.NewRecvBatch(queryBatch, maxQuerySize)
	rb.Budget = &s.p.waits
	fwd := udpsock.NewSendBatch(queryBatch)
	rep := udpsock.NewSendBatch(queryBatch)
	if udpsock.Wildcard(l.addr) {
		rb.WithPktinfo()
		rep.WithPktinfo()
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
		n, err := rb.Recv(l.fd)
		if err != nil {
			if err != unix.EAGAIN && err != unix.EINTR {
				s.p.stats.ReadErrors.Add(1)
			}
			continue
		}
		// One clock read per wake-up, not per query: the batch's queries
		// arrived before it and go out together after it.
		now := s.p.now()
		for i := 0; i < n; i++ {
			msg, trunc := rb.Msg(i)
			if trunc {
				s.p.stats.MalformedShort.Add(1)
				continue
			}
			u, wire, out := s.handleQuery(l, msg, &rb.Addrs[i], &v, outs[i][:0], wires[i][:0], now)
			outs[i] = out
			if u != nil {
				fwd.Add(&u.sa, wire)
			}
			if len(out) > 0 {
				// Answers made here (cache hits, stale answers,
				// spoofs) obey the client's buffer like forwarded ones.
				if fit := dnswire.FitUDP(out, v.MaxUDPResponse()); fit != nil {
					if len(fit) < len(out) {
						s.p.stats.Truncated.Add(1)
					}
					rep.Add(&rb.Addrs[i], fit)
					s.p.logResponseUDP(&rb.Addrs[i], l.addr, fit)
				}
			}
		}
		if fwd.N > 0 {
			// A send the kernel refuses leaves its query to the timeout.
			failed := fwd.Flush(s.bfd, s.drainFn)
			s.p.stats.SendErrors.Add(uint64(failed))
			// The sends may have drained ICMP errors meant for the
			// backend loop, which will not wake for them now.
			s.handleRefused()
		}
		if rep.N > 0 {
			failed := rep.Flush(l.fd, nil)
			s.p.stats.SendErrors.Add(uint64(failed))
		}
	}
}

// handleQuery validates one query, then records it in flight and returns
// the backend to send it to with the bytes to send (msg with its ID
// rewritten, or, when it goes out with a PROXY header or an ECS edit, a copy
// built in wire), and/or returns the answer to send back (empty: send
// nothing). A cache hit due for prefetch does both. now is p.now() when
// the query's batch was read: its send time.
func (s *shard) handleQuery(l *udpListener, msg []byte, src *udpsock.Addr, v *msgView, out, wire []byte, now int64) (*upstream, []byte, []byte) {
	p := s.p
	p.stats.UDPQueries.Add(1)
	snap := p.snap.Load()
	err := v.ParseQuery(msg)
	client := src.AddrPort().Addr()
	p.logQueryUDP(src, l.addr, msg) // before the ID is rewritten
	vd, pool, out := p.frontOn(dnswire.UDP, snap, v, msg, err, client, out)
	if vd != vForward && vd != vPrefetch {
		return nil, nil, out
	}
	refresh := vd == vPrefetch
	h := policy.HashName(v.Name())
	idx := pool.pol.Pick(h, 0)
	if idx < 0 {
		if refresh {
			return nil, nil, out
		}
		o, stale := p.failAnswer(pool, &v.key, msg, v, out)
		if !stale {
			p.stats.NoBackend.Add(1)
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
		p.stats.Shed.Add(1)
		return nil, nil, dnswire.AppendReply(out, msg, &v.View, dnswire.RcodeServFail)
	}
	sl := &s.tab.slots[si]
	sl.client = *src
	sl.ln = l.idx
	sl.maxUDP = v.MaxUDPResponse()
	s.track(si, snap, pool, u, idx, h, v, msg, refresh, now)
	if u.pp || v.ECS.Mode != dnswire.ECSNone {
		wire = appendWire(wire, u, src.AddrPort(), l.addr, msg, v, sl.id)
	} else {
		binary.BigEndian.PutUint16(msg, sl.id)
		wire = msg
	}
	u.stats.Outstanding.Add(1)
	s.mu.Unlock()
	u.queries.Add(1)
	return u, wire, out
}

// track fills a slot just allocated for v's query msg, first sent to u
// (pool.ups[idx]), and puts it on the timer wheel. The caller has set the
// slot's destination (client and ln, or wait) and holds s.mu.
func (s *shard) track(si int32, snap *snapshot, pool *poolSnap, u *upstream, idx int, h uint64, v *msgView, msg []byte, refresh bool, now int64) {
	sl := &s.tab.slots[si]
	sl.clientID = v.ID
	sl.pool = pool
	sl.hash = h
	bit := uint64(1) << (uint(idx) % 64)
	sl.tried = bit
	sl.att[0] = attempt{up: u, sent: now, live: true, bit: bit}
	sl.natt, sl.live = 1, 1
	sl.deadline = now + snap.deadline
	sl.retryAt = now + u.rtt.RTO(snap.rtoFloor, snap.rtoCeil)
	sl.hedgeAt = 0
	if pool.hedge && len(pool.ups) > 1 {
		pool.lat.Credit(pool.hedgeCredit)
		if d := pool.lat.HedgeAfter(); d > 0 && now+d < sl.retryAt {
			sl.hedgeAt = now + d
		}
	}
	sl.query = append(sl.query[:0], msg...)
	sl.qEnd = v.QEnd
	sl.refresh = refresh
	sl.ecs = v.ECS.Mode
	sl.setDue()
	s.tab.schedule(si)
	if s.tab.n == 1 {
		// The table was empty, so the timeout loop may be asleep.
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// backendLoop reads every backend's answers on this shard's socket, until
// the proxy has drained and closes the shard.
func (s *shard) backendLoop() {
	rb := udpsock.NewRecvBatch(answerBatch, dnswire.MaxMessage)
	rb.Budget = &s.p.waits
	reps := make([]*udpsock.Batch, len(s.p.udpLns))
	for i := range reps {
		reps[i] = udpsock.NewSendBatch(answerBatch)
		if udpsock.Wildcard(s.p.udpLns[i].addr) {
			reps[i].WithPktinfo()
		}
	}
	var clients [answerBatch]udpsock.Addr
	outs := make([][]byte, answerBatch) // for stale answers, rare: grown on demand
	s.flushes = make([]stream.Flusher, 0, answerBatch)
	var v, qv msgView
	for !s.closing.Load() {
		n, err := rb.Recv(s.bfd)
		if err != nil {
			switch err {
			case unix.EAGAIN, unix.EINTR:
			case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.EACCES:
				s.errPending.Store(true)
			default:
				s.p.stats.ReadErrors.Add(1)
			}
			s.handleRefused()
			continue
		}
		s.handleRefused()
		// Every answer of the batch had arrived by now: one clock read
		// times them all.
		now := s.p.now()
		for i := 0; i < n; i++ {
			msg, trunc := rb.Msg(i)
			if trunc {
				s.p.stats.UnexpectedAnswers.Add(1)
				continue
			}
			ln, out := s.handleAnswer(msg, rb.Addrs[i].AddrPort(), &v, &qv, &clients[i], outs[i][:0], now)
			if out != nil {
				reps[ln].Add(&clients[i], out)
				s.p.logResponseUDP(&clients[i], s.p.udpLns[ln].addr, out)
			}
		}
		// A stream connection's answers of this batch go out in one
		// write (one TLS record) instead of one each.
		for i, w := range s.flushes {
			w.Flush()
			s.flushes[i] = nil
		}
		s.flushes = s.flushes[:0]
		for i, rep := range reps {
			if rep.N > 0 {
				failed := rep.Flush(s.p.udpLns[i].fd, nil)
				s.p.stats.SendErrors.Add(uint64(failed))
			}
		}
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
