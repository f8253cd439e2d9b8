package proxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/proxyproto"
	"github.com/anyfront/anyfront/state"
)

// PROXY protocol v2 towards backends (haproxy's proxy-protocol.txt): a
// backend with proxy_protocol set gets a header naming the client in front
// of every UDP datagram and at the start of every TCP connection, so the
// resolver's logs, ACLs and ECS see the client rather than anyfront.

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
// needs: the largest query, a PROXY header and an ECS edit. Buffers that
// may carry a header keep this room, so the UDP path prepends it without
// allocating.
const maxWireQuery = maxQuerySize + proxyproto.MaxV2Len + dnswire.ECSMaxGrowth

// appendWire appends what goes to u for the query msg (parsed into v, its
// ECS planned) that client sent to local: a PROXY header when u wants one,
// then the query with its ECS edit, under the backend-side ID id.
func appendWire(dst []byte, u *upstream, client, local netip.AddrPort, msg []byte, v *msgView, id uint16) []byte {
	if u.pp {
		dst = proxyproto.AppendV2(dst, client, local, false)
	}
	q := len(dst)
	dst = dnswire.AppendForward(dst, msg, &v.View)
	binary.BigEndian.PutUint16(dst[q:], id)
	return dst
}
