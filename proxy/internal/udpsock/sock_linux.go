package udpsock

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UDP path talks to the kernel directly: blocking sockets read with
// recvmmsg(MSG_WAITFORONE) and written with sendmmsg. A blocked reader is a
// thread the kernel wakes straight from the socket, with no netpoller hop,
// and a wake-up takes every datagram already queued, never waiting for a
// batch to fill.

// Addr is a socket address in kernel form, big enough for IPv6.
type Addr struct {
	b [unix.SizeofSockaddrInet6]byte
	n uint32
	// Local is where the client's query came to, when the listener is a
	// wildcard (pktinfo_linux.go): the answer's source.
	Local LocalAddr
}

func AddrFrom(ap netip.AddrPort, v6socket bool) Addr {
	var r Addr
	a := ap.Addr()
	if !v6socket && a.Unmap().Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.b[0]))
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
		sa.Addr = a.Unmap().As4()
		r.n = unix.SizeofSockaddrInet4
		return r
	}
	sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.b[0]))
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = a.As16() // an IPv4 address becomes v4-mapped
	sa.Scope_id = 0
	r.n = unix.SizeofSockaddrInet6
	return r
}

// AddrPort decodes a kernel address; v4-mapped addresses come back as IPv4.
func (r *Addr) AddrPort() netip.AddrPort {
	switch *(*uint16)(unsafe.Pointer(&r.b[0])) {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&r.b[0]))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&r.b[0]))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:]))
	}
	return netip.AddrPort{}
}

// mmsghdr is struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// Batch is a reusable set of messages for one recvmmsg or sendmmsg.
type Batch struct {
	msgs  []mmsghdr
	iovs  []unix.Iovec
	Addrs []Addr
	bufs  [][]byte // receive buffers; nil in a send batch
	// oob holds each message's pktinfo on a wildcard listener's batches
	// (pktinfo_linux.go); nil elsewhere.
	oob [][oobSize]byte
	N   int // messages filled, for a send batch
	// busy says the last receive brought datagrams: the next one blocks
	// without telling the runtime (see Recv).
	busy bool
	// Budget, when set, lets receives wait in raw system calls.
	Budget *WaitBudget
}

func NewRecvBatch(n, bufSize int) *Batch {
	b := &Batch{msgs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), Addrs: make([]Addr, n), bufs: make([][]byte, n)}
	for i := range b.msgs {
		b.bufs[i] = make([]byte, bufSize)
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(bufSize)
		b.msgs[i].hdr.Name = &b.Addrs[i].b[0]
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

func NewSendBatch(n int) *Batch {
	b := &Batch{msgs: make([]mmsghdr, n), iovs: make([]unix.Iovec, n), Addrs: make([]Addr, n)}
	for i := range b.msgs {
		b.msgs[i].hdr.Name = &b.Addrs[i].b[0]
		b.msgs[i].hdr.Iov = &b.iovs[i]
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// Recv blocks until at least one datagram is queued, then takes every one
// queued, up to the batch size. EAGAIN means the receive timeout passed
// with nothing to read; EINTR, that a signal came first.
//
// While traffic flows, the wait is a raw system call: the runtime is not
// told, so its monitor does not take the reader's P away at every wait and
// hand it back at every wake-up, thread hand-offs that cost a cache hit
// about a fifth of its CPU (measured at 20k q/s). The P is the reader's own
// (the program adds one per reader: proxy.Procs), so nothing waits for it. The runtime
// still reaches the reader: it preempts a goroutine that holds a P for 10ms
// (and stops the world for GC) with a signal, and a signal ends a receive
// on a socket with a receive timeout with EINTR (signal(7)), SA_RESTART or
// not. After such an interruption, or when idle, the next wait is an
// ordinary system call, so an idle reader is not woken every 10ms.
func (b *Batch) Recv(fd int) (int, error) {
	for i := range b.msgs {
		b.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet6
		b.msgs[i].hdr.Flags = 0
	}
	if b.oob != nil {
		for i := range b.msgs {
			b.msgs[i].hdr.Control = &b.oob[i][0]
			b.msgs[i].hdr.SetControllen(oobSize)
		}
	}
	var r uintptr
	var e unix.Errno
	if b.busy && b.Budget.begin() {
		r, _, e = unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)), unix.MSG_WAITFORONE, 0, 0)
		b.Budget.waiters.Add(-1)
	} else {
		r, _, e = unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)), unix.MSG_WAITFORONE, 0, 0)
	}
	b.busy = e == 0
	if e != 0 {
		return 0, e
	}
	n := int(r)
	for i := 0; i < n; i++ {
		b.Addrs[i].n = b.msgs[i].hdr.Namelen
		if b.oob != nil {
			b.readPktinfo(i)
		}
	}
	return n, nil
}

// WaitBudget bounds the raw waits of one program's readers (see Recv): a
// raw wait is claimed only while it still leaves a P per CPU to the rest of
// the program, so a GOMAXPROCS lower than the caller raised it (a test's
// testing.AllocsPerRun runs at 1) turns raw waits into ordinary system
// calls instead of starving the scheduler. Base is the CPUs the program
// itself needs: GOMAXPROCS as it was before the readers' Ps were added.
type WaitBudget struct {
	Base    int
	waiters atomic.Int32
}

func (w *WaitBudget) begin() bool {
	if w == nil {
		return false
	}
	if int(w.waiters.Add(1)) <= runtime.GOMAXPROCS(0)-w.Base {
		return true
	}
	w.waiters.Add(-1)
	return false
}

// Msg returns received datagram i; truncated reports a datagram larger than
// the buffer, which is never a valid message for us.
func (b *Batch) Msg(i int) (msg []byte, truncated bool) {
	return b.bufs[i][:b.msgs[i].n], b.msgs[i].hdr.Flags&unix.MSG_TRUNC != 0
}

// Add queues payload for to. The payload is not copied: it must stay
// unchanged until flush.
func (b *Batch) Add(to *Addr, payload []byte) bool {
	if b.N == len(b.msgs) || len(payload) == 0 {
		return false
	}
	i := b.N
	b.Addrs[i] = *to
	b.msgs[i].hdr.Namelen = to.n
	b.setControl(i, to)
	b.iovs[i].Base = &payload[0]
	b.iovs[i].SetLen(len(payload))
	b.N++
	return true
}

// ICMPErr reports an errno that stands for an ICMP error the kernel queued
// on the socket (IP_RECVERR). A send on that socket may return it even though
// it belongs to an earlier datagram to another destination.
func ICMPErr(e unix.Errno) bool {
	switch e {
	case unix.ECONNREFUSED, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EHOSTDOWN, unix.EACCES:
		return true
	}
	return false
}

// Flush sends every queued message and returns how many failed. A message
// the kernel refuses is skipped so the rest still go.
//
// An unconnected socket with IP_RECVERR has one pending-error slot for every
// destination: an ICMP error from a refusing backend fails the next send,
// whatever its destination, and reading the error queue sets the slot again
// while entries remain. So a send that fails with an earlier datagram's
// error calls drain, which empties the queue (clearing the slot, and noting
// who refused), then sends again. Before, a refusing backend among healthy
// ones made healthy backends' queries fail here and wait out a timeout.
func (b *Batch) Flush(fd int, drain func()) (failed int) {
	tries := 0 // for the message at off
	for off := 0; off < b.N; {
		// Raw: a UDP send does not wait for the peer, and the P is the
		// sender's own (see recv).
		r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[off])), uintptr(b.N-off), 0, 0, 0)
		switch {
		case e == unix.EINTR:
			continue
		case ICMPErr(e) && drain != nil && tries < maxICMPResends:
			// The error was an earlier datagram's: this one was not
			// sent, so send it again.
			drain()
			tries++
		case e != 0:
			failed++
			off++
			tries = 0
		default:
			off += int(r)
			tries = 0
		}
	}
	for i := 0; i < b.N; i++ {
		b.iovs[i].Base = nil // drop references to the payloads
	}
	b.N = 0
	return failed
}

// maxICMPResends bounds how often one datagram is sent again because the
// socket reported another datagram's ICMP error: after a drain the next try
// nearly always goes; more in a row means errors arrive faster than we can
// read them, and the datagram is left to its timeout.
const maxICMPResends = 8

// SendTo sends one datagram; the timeout and retry paths use it. Like
// flush, it drains and sends again when the kernel hands it an earlier
// datagram's ICMP error (drain nil: no error queue on this socket).
func SendTo(fd int, to *Addr, payload []byte, drain func()) (icmp bool, err error) {
	if len(payload) == 0 {
		return false, nil
	}
	if to.Local.fam != 0 {
		return SendFrom(fd, to, payload)
	}
	for tries := 0; ; tries++ {
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&payload[0])), uintptr(len(payload)), 0, uintptr(unsafe.Pointer(&to.b[0])), uintptr(to.n))
		switch {
		case e == 0:
			return icmp, nil
		case e == unix.EINTR:
		case ICMPErr(e) && drain != nil && tries < maxICMPResends:
			icmp = true
			drain()
		default:
			return icmp, e
		}
	}
}

// ReadTimeout bounds how long a blocked reader sleeps without traffic, so
// it notices shutdown; idle readers wake four times a second, nothing more.
const ReadTimeout = 250 * time.Millisecond

func setCommon(fd int, bufBytes int) error {
	tv := unix.NsecToTimeval(ReadTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	// Bursts arrive faster than a worker wakes: large buffers absorb them
	// instead of dropping. The kernel caps them at net.core.*mem_max.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, bufBytes)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, bufBytes)
	return nil
}

// ListenUDP opens one blocking SO_REUSEPORT socket on addr.
func ListenUDP(addr netip.AddrPort) (int, bool, error) {
	v6 := addr.Addr().Is6() && !addr.Addr().Is4In6()
	family := unix.AF_INET
	if v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return -1, v6, err
	}
	fail := func(err error) (int, bool, error) {
		unix.Close(fd)
		return -1, v6, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fail(err)
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fail(err)
		}
	}
	if err := setCommon(fd, 4<<20); err != nil {
		return fail(err)
	}
	if Wildcard(addr) {
		if err := setPktinfo(fd, v6); err != nil {
			return fail(err)
		}
	}
	ra := AddrFrom(addr, v6)
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&ra.b[0])), uintptr(ra.n)); e != 0 {
		return fail(e)
	}
	return fd, v6, nil
}

// BackendSocket opens a shard's socket to every backend: unconnected, dual
// stack where the kernel has IPv6, with ICMP errors reported (IP_RECVERR), so
// a refusing backend is known at once and its queries retried elsewhere.
func BackendSocket() (int, bool, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	v6 := err == nil
	if err == nil {
		if err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err == nil {
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVERR, 1)
		}
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil { // no IPv6 in this kernel: IPv4 backends only
		v6 = false
		if fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP); err != nil {
			return -1, false, fmt.Errorf("backend socket: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_RECVERR, 1); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("backend socket: IP_RECVERR: %w", err)
	}
	if err := setCommon(fd, 4<<20); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("backend socket: %w", err)
	}
	// Bind to an ephemeral port now, so the port is fixed before the
	// first query goes out.
	var any Addr
	if v6 {
		any = AddrFrom(netip.AddrPortFrom(netip.IPv6Unspecified(), 0), true)
	} else {
		any = AddrFrom(netip.AddrPortFrom(netip.IPv4Unspecified(), 0), false)
	}
	if _, _, e := unix.Syscall(unix.SYS_BIND, uintptr(fd), uintptr(unsafe.Pointer(&any.b[0])), uintptr(any.n)); e != 0 {
		unix.Close(fd)
		return -1, false, fmt.Errorf("backend socket: bind: %w", e)
	}
	return fd, v6, nil
}

// ReadErrQueue drains the socket's error queue and calls fn once with each
// destination ICMP errors came back for.
func ReadErrQueue(fd int, fn func(dst netip.AddrPort)) {
	var seen [8]netip.AddrPort
	n := 0
	defer func() {
		for _, d := range seen[:n] {
			fn(d)
		}
	}()
	var ra Addr
	var buf [512]byte
	var oob [512]byte
	for i := 0; i < 1024; i++ { // bounded: the queue is bounded by the socket buffer anyway
		iov := unix.Iovec{Base: &buf[0]}
		iov.SetLen(len(buf))
		var h unix.Msghdr
		h.Name = &ra.b[0]
		h.Namelen = unix.SizeofSockaddrInet6
		h.Iov = &iov
		h.SetIovlen(1)
		h.Control = &oob[0]
		h.SetControllen(len(oob))
		_, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&h)), unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if e != 0 {
			return
		}
		ra.n = h.Namelen
		d := ra.AddrPort()
		dup := false
		for _, x := range seen[:n] {
			dup = dup || x == d
		}
		switch {
		case dup:
		case n < len(seen):
			seen[n] = d
			n++
		default:
			fn(d)
		}
	}
}
