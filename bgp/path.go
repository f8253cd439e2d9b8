package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// GracefulShutdown is the well-known GRACEFUL_SHUTDOWN community (RFC 8326):
// a router that honours it lowers the route's preference, so traffic moves
// to other nodes before the route is withdrawn.
const GracefulShutdown = "65535:0"

// Path is one route the node wants announced: a prefix and the attributes it
// carries. Paths are values; two equal paths are the same announcement.
type Path struct {
	Prefix netip.Prefix
	// NextHop is the route's next hop; the zero value means the session's
	// local address (IPv4 prefixes only: config requires an explicit
	// global next hop for IPv6).
	NextHop netip.Addr
	// Communities are "asn:value" standard or "asn:a:b" large
	// communities, in the order given, without duplicates.
	Communities []string
	MED         uint32
	// Prepend is how many extra times our AS goes on the AS path; the
	// speaker adds it once more on eBGP sessions, as always.
	Prepend int
}

// Equal reports whether p and q are the same announcement.
func (p Path) Equal(q Path) bool {
	return p.Prefix == q.Prefix && p.NextHop == q.NextHop && p.MED == q.MED &&
		p.Prepend == q.Prepend && slices.Equal(p.Communities, q.Communities)
}

// String is for logs and test failures.
func (p Path) String() string {
	var b strings.Builder
	b.WriteString(p.Prefix.String())
	if p.NextHop.IsValid() {
		fmt.Fprintf(&b, " via %s", p.NextHop)
	}
	if len(p.Communities) > 0 {
		fmt.Fprintf(&b, " communities %s", strings.Join(p.Communities, " "))
	}
	if p.MED != 0 {
		fmt.Fprintf(&b, " med %d", p.MED)
	}
	if p.Prepend != 0 {
		fmt.Fprintf(&b, " prepend %d", p.Prepend)
	}
	return b.String()
}

// HasCommunity reports whether p carries the community c.
func (p Path) HasCommunity(c string) bool { return slices.Contains(p.Communities, c) }

// withCommunity returns p with c appended unless it is already there. The
// slice is copied: paths are shared values.
func (p Path) withCommunity(c string) Path {
	if c == "" || p.HasCommunity(c) {
		return p
	}
	p.Communities = append(slices.Clip(p.Communities), c)
	return p
}

// parseCommunities splits communities into standard (32-bit) and large
// ones. Config validated them already; an error here is a programming error
// surfaced rather than a route sent with half its attributes.
func parseCommunities(cs []string) (std []uint32, large []*gobgp.LargeCommunity, err error) {
	for _, c := range cs {
		parts := strings.Split(c, ":")
		switch len(parts) {
		case 2:
			hi, err1 := strconv.ParseUint(parts[0], 10, 16)
			lo, err2 := strconv.ParseUint(parts[1], 10, 16)
			if err1 != nil || err2 != nil {
				return nil, nil, fmt.Errorf("community %q: want asn:value, each 0-65535", c)
			}
			std = append(std, uint32(hi)<<16|uint32(lo))
		case 3:
			lc, err := gobgp.ParseLargeCommunity(c)
			if err != nil {
				return nil, nil, fmt.Errorf("large community %q: %w", c, err)
			}
			large = append(large, lc)
		default:
			return nil, nil, fmt.Errorf("community %q: want asn:value or asn:a:b", c)
		}
	}
	return std, large, nil
}

// family returns the GoBGP address family of a prefix.
func family(p netip.Prefix) *api.Family {
	if p.Addr().Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// apiPath builds the GoBGP path for p as originated by localASN. The same
// value is later handed to DeletePath, so a withdraw names exactly what was
// announced (GoBGP's DeletePath without a path deletes every local route).
func (p Path) apiPath(localASN uint32) (*api.Path, error) {
	if !p.Prefix.IsValid() || p.Prefix != p.Prefix.Masked() {
		return nil, fmt.Errorf("path %s: not a valid prefix", p.Prefix)
	}
	var nlri gobgp.AddrPrefixInterface
	bits := uint8(p.Prefix.Bits())
	if p.Prefix.Addr().Is4() {
		nlri = gobgp.NewIPAddrPrefix(bits, p.Prefix.Addr().String())
	} else {
		nlri = gobgp.NewIPv6AddrPrefix(bits, p.Prefix.Addr().String())
	}
	attrs := []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP)}

	switch {
	case p.Prefix.Addr().Is4():
		nh := "0.0.0.0" // unspecified: GoBGP puts the session's local address
		if p.NextHop.IsValid() {
			if !p.NextHop.Is4() {
				return nil, fmt.Errorf("path %s: next hop %s is not IPv4", p.Prefix, p.NextHop)
			}
			nh = p.NextHop.String()
		}
		attrs = append(attrs, gobgp.NewPathAttributeNextHop(nh))
	default:
		// An IPv6 route over an IPv4 session would otherwise get an
		// IPv4-mapped next hop no router can use.
		if !p.NextHop.IsValid() || !p.NextHop.Is6() || p.NextHop.Is4In6() {
			return nil, fmt.Errorf("path %s: an IPv6 prefix needs a global IPv6 next hop", p.Prefix)
		}
		attrs = append(attrs, gobgp.NewPathAttributeMpReachNLRI(p.NextHop.String(), []gobgp.AddrPrefixInterface{nlri}))
	}

	if p.Prepend > 0 {
		as := make([]uint32, p.Prepend)
		for i := range as {
			as[i] = localASN
		}
		attrs = append(attrs, gobgp.NewPathAttributeAsPath([]gobgp.AsPathParamInterface{
			gobgp.NewAs4PathParam(gobgp.BGP_ASPATH_ATTR_TYPE_SEQ, as),
		}))
	}
	if p.MED != 0 {
		attrs = append(attrs, gobgp.NewPathAttributeMultiExitDisc(p.MED))
	}
	std, large, err := parseCommunities(p.Communities)
	if err != nil {
		return nil, fmt.Errorf("path %s: %w", p.Prefix, err)
	}
	if len(std) > 0 {
		attrs = append(attrs, gobgp.NewPathAttributeCommunities(std))
	}
	if len(large) > 0 {
		attrs = append(attrs, gobgp.NewPathAttributeLargeCommunities(large))
	}
	ap, err := apiutil.NewPath(nlri, false, attrs, time.Now())
	if err != nil {
		return nil, fmt.Errorf("path %s: %w", p.Prefix, err)
	}
	return ap, nil
}
