// Package proxyproto reads and writes PROXY protocol v2 headers (haproxy's
// proxy-protocol.txt, section 2.2): the binary header a load balancer puts
// in front of a connection (or a datagram) to name the client it came from.
//
// It owns the wire format only: ReadHeader for listeners that trust a load
// balancer in front of them, AppendV2 and AppendV2Local for anyfront's own
// headers towards backends. It knows no socket, no config and no counter,
// decides nothing about whom to trust, and never imports proxy. The text
// form (v1) is not read: a v1 header fails with ErrSignature.
package proxyproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Signature opens every v2 header.
const Signature = "\r\n\r\n\x00\r\nQUIT\n"

const (
	// MaxV2Len is the longest header AppendV2 writes: 16 fixed bytes and
	// two IPv6 addresses with ports. Buffers that may carry a header keep
	// this much room, so a header is prepended without allocating.
	MaxV2Len = 16 + 36

	// MaxBody bounds the address block and TLVs ReadHeader accepts after
	// the fixed 16 bytes. Addresses take at most 216 bytes (AF_UNIX); the
	// rest are TLVs, which are skipped. 2 KiB leaves room for the TLVs load
	// balancers send (ALPN, authority, SSL, unique ID) without reading
	// 64 KiB per connection.
	MaxBody = 2048

	cmdProxy   = 0x21 // version 2, PROXY: the addresses are the client's
	famInet    = 0x10
	famInet6   = 0x20
	protoTCP   = 0x01
	protoDgram = 0x02
)

// Header errors ReadHeader returns; the reader should close the connection.
var (
	ErrSignature = errors.New("proxy protocol: no v2 signature")
	ErrVersion   = errors.New("proxy protocol: not version 2")
	ErrCommand   = errors.New("proxy protocol: unknown command")
	ErrTooLong   = errors.New("proxy protocol: header too long")
	ErrAddress   = errors.New("proxy protocol: address block too short")
)

// ReadHeader reads one v2 header from r, byte-exactly (nothing after the
// header is consumed). It returns the source address it carries, or local
// when the sender speaks for itself (the LOCAL command, health checks) or
// the family is one with no use here (UNSPEC, AF_UNIX).
func ReadHeader(r io.Reader) (src netip.AddrPort, local bool, err error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return src, false, fmt.Errorf("proxy protocol header: %w", err)
	}
	if string(hdr[:12]) != Signature {
		return src, false, ErrSignature
	}
	if hdr[12]>>4 != 2 {
		return src, false, ErrVersion
	}
	cmd := hdr[12] & 0xF
	if cmd > 1 {
		return src, false, ErrCommand
	}
	n := int(binary.BigEndian.Uint16(hdr[14:]))
	if n > MaxBody {
		return src, false, ErrTooLong
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return src, false, fmt.Errorf("proxy protocol header: %w", err)
	}
	if cmd == 0 { // LOCAL: the connection is the sender's own
		return src, true, nil
	}
	switch hdr[13] >> 4 {
	case 1: // AF_INET: src, dst, sport, dport
		if n < 12 {
			return src, false, ErrAddress
		}
		a := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:])), false, nil
	case 2: // AF_INET6
		if n < 36 {
			return src, false, ErrAddress
		}
		a := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:])), false, nil
	}
	return src, true, nil
}

// AppendV2 appends a v2 PROXY header for traffic from src to dst over a
// stream (TCP) or datagrams (UDP). Both addresses go as IPv4 when src is
// IPv4 (unmapped); dst is the address the client sent to, and when it is
// of the other family (a dual-stack wildcard listener) the header carries
// that family's unspecified address rather than mapping src into IPv6,
// which would hide the client's IPv4 address from the receiver's ACLs. It
// allocates nothing when b has MaxV2Len bytes of room.
func AppendV2(b []byte, src, dst netip.AddrPort, stream bool) []byte {
	proto := byte(protoDgram)
	if stream {
		proto = protoTCP
	}
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	b = append(b, Signature...)
	b = append(b, cmdProxy)
	if s.Is4() {
		if !d.Is4() {
			d = netip.IPv4Unspecified()
		}
		b = append(b, famInet|proto, 0, 12)
		s4, d4 := s.As4(), d.As4()
		b = append(append(b, s4[:]...), d4[:]...)
	} else {
		if !d.Is6() {
			d = netip.IPv6Unspecified()
		}
		b = append(b, famInet6|proto, 0, 36)
		s16, d16 := s.As16(), d.As16()
		b = append(append(b, s16[:]...), d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// AppendV2Local appends a v2 LOCAL header: the connection is the sender's
// own (health checks, or a client the sender cannot name), and the receiver
// uses its real endpoints.
func AppendV2Local(b []byte) []byte {
	b = append(b, Signature...)
	return append(b, 0x20, 0, 0, 0)
}
