package proxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// PROXY protocol v2 towards backends (haproxy's proxy-protocol.txt): a
// backend with proxy_protocol set gets a header naming the client in front
// of every UDP datagram and at the start of every TCP connection, so the
// resolver's logs, ACLs and ECS see the client rather than anyfront.

const (
	// ppHeaderMax is the longest header anyfront sends: 16 fixed bytes and
	// two IPv6 addresses with ports. Buffers that may carry a header keep
	// this much room, so the UDP path prepends it without allocating.
	ppHeaderMax = 16 + 36

	ppCmdProxy   = 0x21 // version 2, PROXY: the addresses are the client's
	ppFamInet    = 0x10
	ppFamInet6   = 0x20
	ppProtoTCP   = 0x01
	ppProtoDgram = 0x02
)

// appendPPv2 appends a v2 PROXY header for traffic from src to dst over a
// stream (TCP) or datagrams (UDP). Both addresses go as IPv4 when src is
// IPv4 (unmapped); dst is the address the client sent to, and when it is
// of the other family (a dual-stack wildcard listener) the header carries
// that family's unspecified address rather than mapping src into IPv6,
// which would hide the client's IPv4 address from the backend's ACLs.
func appendPPv2(b []byte, src, dst netip.AddrPort, stream bool) []byte {
	proto := byte(ppProtoDgram)
	if stream {
		proto = ppProtoTCP
	}
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	b = append(b, ppSignature...)
	b = append(b, ppCmdProxy)
	if s.Is4() {
		if !d.Is4() {
			d = netip.IPv4Unspecified()
		}
		b = append(b, ppFamInet|proto, 0, 12)
		s4, d4 := s.As4(), d.As4()
		b = append(append(b, s4[:]...), d4[:]...)
	} else {
		if !d.Is6() {
			d = netip.IPv6Unspecified()
		}
		b = append(b, ppFamInet6|proto, 0, 36)
		s16, d16 := s.As16(), d.As16()
		b = append(append(b, s16[:]...), d16[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// backendPP says whether cfg asks for PROXY protocol to backend b (the
// state store does not carry it: it is how the proxy talks, not health).
func backendPP(cfg *config.Config, b *state.Backend) bool {
	if pc := cfg.Pools[b.Pool]; pc != nil {
		for i := range pc.Backends {
			if pc.Backends[i].Name == b.Name {
				return pc.Backends[i].ProxyProtocol
			}
		}
	}
	return false
}

// maxWireQuery is the room a UDP query edited on its way to a backend
// needs: the largest query, a PROXY header and an ECS edit.
const maxWireQuery = maxQuerySize + ppHeaderMax + dnswire.ECSMaxGrowth

// appendWire appends what goes to u for the query msg (parsed into v, its
// ECS planned) that client sent to local: a PROXY header when u wants one,
// then the query with its ECS edit, under the backend-side ID id.
func appendWire(dst []byte, u *upstream, client, local netip.AddrPort, msg []byte, v *msgView, id uint16) []byte {
	if u.pp {
		dst = appendPPv2(dst, client, local, false)
	}
	q := len(dst)
	dst = dnswire.AppendForward(dst, msg, &v.View)
	binary.BigEndian.PutUint16(dst[q:], id)
	return dst
}

// appendPPv2Local appends a v2 LOCAL header: the connection is the
// sender's own (health checks, or a client anyfront cannot name), and the
// receiver uses its real endpoints.
func appendPPv2Local(b []byte) []byte {
	b = append(b, ppSignature...)
	return append(b, 0x20, 0, 0, 0)
}
