package healthcheck

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// readBufSize holds any probe answer's header and question; a longer answer
// is cut, which judging does not mind.
const readBufSize = 4096

// sendBatch is how many datagrams one sendmmsg or recvmmsg call carries; at
// 1,000 probes a second a scheduler tick has about ten of each.
const sendBatch = 64

// sockets are the Checker's two shared UDP probe sockets; v6 is nil when
// the host has no IPv6. Only the scheduler goroutine uses them.
type sockets struct {
	c          *Checker
	v4, v6     *probeSocket
	pos4, pos6 []int // batch position of each queued probe
	// want6: IPv6 probes are in flight, so the IPv6 socket is worth a
	// read; most setups probe over one family only.
	want6 bool
}

// receive handles every answer waiting on the sockets. It runs before the
// scheduler expires probes, so an answer that came in time is never taken
// for a timeout because it was read late.
func (s *sockets) receive() {
	for _, ps := range [2]*probeSocket{s.v4, s.v6} {
		if ps == nil || ps == s.v6 && !s.want6 {
			continue
		}
		for {
			n := ps.recv()
			if n == 0 {
				break
			}
			s.c.mu.Lock()
			for i := range n {
				s.c.answer(ps.received(i))
			}
			s.c.mu.Unlock()
			if n < sendBatch {
				break
			}
		}
	}
}

// answer matches one datagram to its probe and ends the probe. Datagrams
// that match none (late, stray or forged) are counted and dropped. at is
// the kernel's arrival time. The caller holds c.mu.
func (c *Checker) answer(msg []byte, from netip.AddrPort, at time.Time) {
	if len(msg) < 2 {
		c.unexpected++
		return
	}
	k := probeKey{from, binary.BigEndian.Uint16(msg)}
	b := c.pending[k]
	if b == nil {
		c.unexpected++
		return
	}
	c.unpendKey(k)
	if at.IsZero() {
		at = time.Now()
	}
	rtt := max(at.Sub(b.sentWall), 0)
	if rtt > b.sentWith.timeout {
		// Read after its deadline only because reads are batched; it
		// came too late all the same.
		c.finish(b, resultTimeout, 0, "", 0, c.now())
		return
	}
	r, rcode, detail := judge(msg, b.sentWith)
	c.finish(b, r, rcode, detail, rtt, c.now())
}

// send writes the batch's probes, one sendmmsg per socket (and per
// sendBatch probes). A probe that cannot be sent ends at once: waiting for
// its timeout would only delay the verdict.
func (s *sockets) send(batch []outgoing) {
	s.pos4, s.pos6 = s.pos4[:0], s.pos6[:0]
	for i, o := range batch {
		ps, pos := s.v4, &s.pos4
		if o.b.addr.Addr().Is6() {
			ps, pos = s.v6, &s.pos6
		}
		if ps.full() {
			s.flush(ps, pos, batch)
		}
		ps.add(o.set.query, o.id, o.b.addr, o.b.scope, o.b.pp) // addr, scope and pp are immutable
		*pos = append(*pos, i)
	}
	s.flush(s.v4, &s.pos4, batch)
	if s.v6 != nil {
		s.flush(s.v6, &s.pos6, batch)
	}
}

func (s *sockets) flush(ps *probeSocket, pos *[]int, batch []outgoing) {
	ps.flush(func(i int, err error) {
		o := batch[(*pos)[i]]
		s.c.ended(o.b, o.seq, resultError, 0, err.Error(), 0)
	})
	*pos = (*pos)[:0]
}

func (s *sockets) close() {
	s.v4.close()
	if s.v6 != nil {
		s.v6.close()
	}
}

// zoneIndex returns the interface index of a link-local address's zone,
// which the kernel needs to send to it; 0 when there is none.
func zoneIndex(a netip.Addr) uint32 {
	z := a.Zone()
	if z == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(z); err == nil {
		return uint32(ifi.Index)
	}
	if n, err := strconv.ParseUint(z, 10, 32); err == nil {
		return uint32(n)
	}
	return 0
}
