package healthcheck

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeSocket is one address family's shared probe socket. It is a plain
// non-blocking descriptor, kept out of Go's network poller on purpose: the
// scheduler sends each wake-up's probes with one sendmmsg(2) and collects
// every answer that has arrived with recvmmsg(2) on its next wake-up, so a
// thousand answers a second cost no goroutine wake-up each (as a blocked
// reader would) and the poller's thread is not woken per datagram. The
// kernel stamps each answer's arrival (SO_TIMESTAMPNS), so round trips stay
// exact although answers are read in batches. Buffers and headers are
// allocated once and reused. Only the scheduler goroutine uses it.
type probeSocket struct {
	fd int
	v6 bool

	// sending
	shdrs []unix.Mmsghdr
	siovs []unix.Iovec
	sbufs [][]byte
	sname [][unix.SizeofSockaddrInet6]byte
	n     int // probes queued

	// receiving
	rhdrs []unix.Mmsghdr
	riovs []unix.Iovec
	rbufs [][]byte
	rname [][unix.SizeofSockaddrInet6]byte
	roob  [][]byte
}

// rcvBuf is the receive buffer asked for: answers wait in it for up to one
// scheduler tick, and a few hundred small datagrams must fit when many
// backends answer at once. The kernel caps it at net.core.rmem_max.
const rcvBuf = 1 << 20

// oobSize holds one SCM_TIMESTAMPNS control message.
var oobSize = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

func openProbeSocket(v6 bool, batch int) (*probeSocket, error) {
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	s := &probeSocket{fd: fd, v6: v6}
	if err := s.setup(); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s.shdrs, s.siovs = make([]unix.Mmsghdr, batch), make([]unix.Iovec, batch)
	s.sbufs, s.sname = make([][]byte, batch), make([][unix.SizeofSockaddrInet6]byte, batch)
	s.rhdrs, s.riovs = make([]unix.Mmsghdr, batch), make([]unix.Iovec, batch)
	s.rbufs, s.rname, s.roob = make([][]byte, batch), make([][unix.SizeofSockaddrInet6]byte, batch), make([][]byte, batch)
	for i := range batch {
		s.sbufs[i] = make([]byte, len(ppLocal)+maxQuery)
		s.siovs[i].Base = &s.sbufs[i][0]
		h := &s.shdrs[i].Hdr
		h.Iov, h.Name = &s.siovs[i], &s.sname[i][0]
		h.SetIovlen(1)

		s.rbufs[i], s.roob[i] = make([]byte, readBufSize), make([]byte, oobSize)
		s.riovs[i].Base = &s.rbufs[i][0]
		h = &s.rhdrs[i].Hdr
		h.Iov, h.Name, h.Control = &s.riovs[i], &s.rname[i][0], &s.roob[i][0]
		h.SetIovlen(1)
	}
	return s, nil
}

func (s *probeSocket) setup() error {
	if s.v6 {
		// IPv4 probes have their own socket; mapped addresses here
		// would only confuse matching.
		if err := unix.SetsockoptInt(s.fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return err
		}
		if err := unix.Bind(s.fd, &unix.SockaddrInet6{}); err != nil {
			return err
		}
	} else if err := unix.Bind(s.fd, &unix.SockaddrInet4{}); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return err
	}
	_ = unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf) // best effort
	return nil
}

func (s *probeSocket) close() { unix.Close(s.fd) }

// full reports whether the send batch cannot take another probe.
func (s *probeSocket) full() bool { return s.n == len(s.shdrs) }

// add queues a probe to addr (scope: the zone's interface index, or 0),
// behind a PROXY v2 LOCAL header when pp is set.
func (s *probeSocket) add(query []byte, id uint16, to netip.AddrPort, scope uint32, pp bool) {
	i := s.n
	s.n++
	off := 0
	if pp {
		off = copy(s.sbufs[i], ppLocal[:])
	}
	n := off + copy(s.sbufs[i][off:], query)
	putID(s.sbufs[i][off:], id)
	s.siovs[i].SetLen(n)
	name := &s.sname[i]
	h := &s.shdrs[i].Hdr
	if s.v6 {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(name))
		*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: to.Addr().As16(), Scope_id: scope}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
		h.Namelen = unix.SizeofSockaddrInet6
	} else {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		*sa = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: to.Addr().As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
		h.Namelen = unix.SizeofSockaddrInet4
	}
}

// flush sends the queued probes; failed(i, err) is told of each one that
// could not be sent, by its position in the batch.
func (s *probeSocket) flush(failed func(i int, err error)) {
	for off := 0; off < s.n; {
		r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.shdrs[off])), uintptr(s.n-off), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			// sendmmsg fails only on the first message it cannot send
			// (a full buffer gives EAGAIN): skip it and go on.
			failed(off, errno)
			off++
		case r == 0:
			failed(off, errSentNothing)
			off++
		default:
			off += int(r)
		}
	}
	s.n = 0
}

var errSentNothing = errors.New("sendmmsg sent nothing")

// recv reads the answers waiting on the socket, up to the batch size, and
// returns how many it read; it never blocks.
func (s *probeSocket) recv() int {
	for i := range s.rhdrs {
		h := &s.rhdrs[i].Hdr
		h.Namelen = unix.SizeofSockaddrInet6
		h.SetControllen(oobSize)
		s.riovs[i].SetLen(readBufSize)
	}
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(s.fd),
			uintptr(unsafe.Pointer(&s.rhdrs[0])), uintptr(len(s.rhdrs)), unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0 // EAGAIN: nothing waiting; anything else: the probe times out
		}
		return int(r)
	}
}

// received returns answer i of the last recv: its bytes, where it came
// from, and when the kernel received it (zero if it did not say).
func (s *probeSocket) received(i int) ([]byte, netip.AddrPort, time.Time) {
	h := &s.rhdrs[i]
	msg := s.rbufs[i][:min(int(h.Len), readBufSize)]
	name := &s.rname[i]
	var from netip.AddrPort
	if s.v6 {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(name))
		from = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	} else {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(name))
		from = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	var at time.Time
	oob := s.roob[i][:h.Hdr.Controllen]
	if len(oob) >= oobSize {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if c.Level == unix.SOL_SOCKET && c.Type == unix.SCM_TIMESTAMPNS {
			ts := (*unix.Timespec)(unsafe.Pointer(&oob[unix.CmsgLen(0)]))
			at = time.Unix(ts.Unix())
		}
	}
	return msg, from, at
}
