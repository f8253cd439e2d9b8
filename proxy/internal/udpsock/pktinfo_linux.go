package udpsock

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A listener on a wildcard address (0.0.0.0, ::) is reached on every
// address of the host, an anycast service address among them. Left to
// itself the kernel answers from the address its route to the client
// prefers, which the client does not know and drops. So such sockets ask
// for each datagram's destination (IP_PKTINFO, IPV6_RECVPKTINFO) and every
// reply names it as its source in a control message. Listeners bound to one
// address never set any of this: their receive and send batches carry no
// control buffers and pay nothing.
//
// Listening sockets on :: are IPv6-only (listenUDP sets IPV6_V6ONLY), so a
// v4 client on a wildcard needs a 0.0.0.0 listener and never shows up
// v4-mapped here.

// oobSize holds one pktinfo control message, either family.
const oobSize = 64

// LocalAddr is the address a query came to, kept with the client's address
// so the answer leaves from it. fam is 0 when the listener is not a
// wildcard: the kernel picks the source as it always has.
type LocalAddr struct {
	addr [16]byte // IPv4 in the first four bytes
	ifx  uint32   // interface, needed for IPv6 link-local only
	fam  uint8    // 0, 4 or 6
}

// Wildcard reports whether addr is 0.0.0.0 or ::, the listeners that need
// pktinfo.
func Wildcard(addr netip.AddrPort) bool { return addr.Addr().IsUnspecified() }

// setPktinfo asks the kernel for each datagram's destination address.
func setPktinfo(fd int, v6 bool) error {
	if v6 {
		return unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}
	return unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
}

// WithPktinfo gives a batch one control buffer per message: a receive batch
// reads the destination of each datagram into its address, a send batch
// writes the source of each reply whose address has one.
func (b *Batch) WithPktinfo() *Batch {
	b.oob = make([][oobSize]byte, len(b.msgs))
	return b
}

// readPktinfo fills addrs[i].local from message i's control data; it is
// called only on batches made withPktinfo.
func (b *Batch) readPktinfo(i int) {
	h := &b.msgs[i].hdr
	l := &b.Addrs[i].Local
	l.fam = 0
	oob := b.oob[i][:min(int(h.Controllen), oobSize)]
	for len(oob) >= unix.SizeofCmsghdr {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if c.Len < unix.SizeofCmsghdr || int(c.Len) > len(oob) {
			return
		}
		data := oob[unix.CmsgLen(0):c.Len]
		switch {
		case c.Level == unix.IPPROTO_IP && c.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			pi := (*unix.Inet4Pktinfo)(unsafe.Pointer(&data[0]))
			*l = LocalAddr{fam: 4}
			copy(l.addr[:4], pi.Addr[:])
			return
		case c.Level == unix.IPPROTO_IPV6 && c.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			pi := (*unix.Inet6Pktinfo)(unsafe.Pointer(&data[0]))
			*l = LocalAddr{addr: pi.Addr, fam: 6}
			if pi.Addr[0] == 0xfe && pi.Addr[1]&0xc0 == 0x80 {
				l.ifx = pi.Ifindex // link-local: only that interface has it
			}
			return
		}
		sp := unix.CmsgSpace(int(c.Len) - unix.CmsgLen(0))
		if sp > len(oob) {
			return
		}
		oob = oob[sp:]
	}
}

// putPktinfo writes l as a control message into oob and returns its length.
func putPktinfo(oob *[oobSize]byte, l *LocalAddr) int {
	c := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	data := unsafe.Pointer(&oob[unix.CmsgLen(0)])
	if l.fam == 4 {
		c.Level, c.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
		c.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
		pi := (*unix.Inet4Pktinfo)(data)
		*pi = unix.Inet4Pktinfo{}
		// spec_dst is the source; no interface, so the reply is routed
		// as any other packet from that address would be.
		copy(pi.Spec_dst[:], l.addr[:4])
		return unix.CmsgSpace(unix.SizeofInet4Pktinfo)
	}
	c.Level, c.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	c.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(data)
	pi.Addr = l.addr
	pi.Ifindex = l.ifx
	return unix.CmsgSpace(unix.SizeofInet6Pktinfo)
}

// setControl points message i's control data at the source to answer from,
// or at nothing.
func (b *Batch) setControl(i int, to *Addr) {
	h := &b.msgs[i].hdr
	if b.oob == nil || to.Local.fam == 0 {
		h.Control = nil
		h.SetControllen(0)
		return
	}
	n := putPktinfo(&b.oob[i], &to.Local)
	h.Control = &b.oob[i][0]
	h.SetControllen(n)
}

// SendFrom is sendTo for an address that names the source to answer from.
func SendFrom(fd int, to *Addr, payload []byte) (bool, error) {
	var oob [oobSize]byte
	n := putPktinfo(&oob, &to.Local)
	iov := unix.Iovec{Base: &payload[0]}
	iov.SetLen(len(payload))
	var h unix.Msghdr
	h.Name = &to.b[0]
	h.Namelen = to.n
	h.Iov = &iov
	h.SetIovlen(1)
	h.Control = &oob[0]
	h.SetControllen(n)
	for {
		_, _, e := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&h)), 0)
		switch e {
		case 0:
			return false, nil
		case unix.EINTR:
		default:
			return false, e
		}
	}
}
