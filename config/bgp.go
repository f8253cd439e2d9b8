package config

import (
	"math"
	"net/netip"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// minHoldTime is the smallest non-zero BGP hold time (RFC 4271 4.2).
const minHoldTime = 3 * time.Second

// defaultBGPPort is the neighbour's port unless a peer says otherwise.
const defaultBGPPort = 179

// bgp decodes the bgp section; line is that of the "bgp:" key. Pools are
// already decoded, so announce pool names are checked here.
func (d *decoder) bgp(n *yaml.Node, line int, cfg *Config) *BGP {
	b := &BGP{WithdrawAfter: defaultWithdraw, Drain: Drain{Community: defaultDrainComm, Grace: defaultDrainGrace}, Line: line}
	f, ok := d.fields(n, "bgp", "asn", "router_id", "listen_port", "peers", "announce", "withdraw_after", "drain")
	if !ok {
		return b
	}
	f.line = line
	if f.require("asn") != nil {
		f.uint32("asn", 1, &b.ASN)
	}
	if r := f.require("router_id"); r != nil {
		// The BGP identifier is a 32-bit number written as IPv4, even on
		// an IPv6-only speaker (RFC 6286).
		if a, ok := d.addr(r, f.at("router_id")); ok && !a.Is4() {
			d.errorf(r, "%s: must be an IPv4 address, got %q", f.at("router_id"), r.Value)
		} else if ok {
			b.RouterID = a
		}
	}
	f.int("listen_port", 0, math.MaxUint16, &b.ListenPort)
	f.duration("withdraw_after", false, &b.WithdrawAfter)

	peers, ok := f.list("peers")
	if f.get("peers") == nil || ok && len(peers) == 0 {
		d.errorAt(f.keyLine("peers"), "bgp: needs at least one peer")
	}
	peerLines := map[netip.Addr]int{}
	for i, it := range peers {
		if p, ok := d.peer(it, index("bgp.peers", i)); ok {
			if first, dup := peerLines[p.Address]; dup {
				d.errorAt(p.Line, "%s: duplicate peer %s (first at line %d)", index("bgp.peers", i), p.Address, first)
				continue
			}
			peerLines[p.Address] = p.Line
			b.Peers = append(b.Peers, p)
		}
	}

	announce, _ := f.list("announce")
	prefixLines := map[netip.Prefix]int{}
	for i, it := range announce {
		if a, ok := d.announce(it, index("bgp.announce", i), cfg); ok {
			if first, dup := prefixLines[a.Prefix]; dup {
				d.errorAt(a.Line, "%s: duplicate prefix %s (first at line %d)", index("bgp.announce", i), a.Prefix, first)
				continue
			}
			prefixLines[a.Prefix] = a.Line
			b.Announce = append(b.Announce, a)
		}
	}

	if dn := f.get("drain"); dn != nil {
		if df, ok := d.fields(dn, "bgp.drain", "community", "grace", "prepend", "med"); ok {
			if c := df.get("community"); c != nil {
				if s, ok := d.community(c, df.at("community")); ok {
					b.Drain.Community = s
				}
			}
			df.duration("grace", false, &b.Drain.Grace)
			df.int("prepend", 0, maxPrepend, &b.Drain.Prepend)
			df.uint32("med", 0, &b.Drain.MED)
		}
	}
	return b
}

func (d *decoder) peer(n *yaml.Node, where string) (BGPPeer, bool) {
	p := BGPPeer{HoldTime: defaultHoldTime, Port: defaultBGPPort, Line: n.Line}
	f, ok := d.fields(n, where, "address", "asn", "hold_time", "password_file", "multihop", "port", "ttl_security")
	if !ok {
		return p, false
	}
	good := false
	if a := f.require("address"); a != nil {
		p.Address, good = d.addr(a, f.at("address"))
	}
	if f.require("asn") == nil || !f.uint32("asn", 1, &p.ASN) {
		good = false
	}
	// RFC 4271 allows 0 (no keepalives), but GoBGP replaces 0 with its
	// 90s default, so accepting it would silently run something else.
	if f.duration("hold_time", false, &p.HoldTime) && p.HoldTime < minHoldTime {
		d.errorf(f.get("hold_time"), "%s: must be at least %s, got %s", f.at("hold_time"), minHoldTime, p.HoldTime)
	}
	if pf := f.get("password_file"); pf != nil {
		p.PasswordFile, _ = d.path(pf, f.at("password_file"))
	}
	f.int("multihop", 0, math.MaxUint8, &p.Multihop)
	f.int("port", 1, math.MaxUint16, &p.Port)
	f.bool("ttl_security", &p.TTLSecurity)
	return p, good
}

func (d *decoder) announce(n *yaml.Node, where string, cfg *Config) (Announce, bool) {
	a := Announce{MinHealthy: defaultMinHealthy, Line: n.Line}
	f, ok := d.fields(n, where, "prefix", "next_hop", "pools", "min_healthy", "min_healthy_fraction", "communities", "med", "prepend")
	if !ok {
		return a, false
	}
	good := false
	if pn := f.require("prefix"); pn != nil {
		a.Prefix, good = d.announcePrefix(pn, f.at("prefix"))
	}
	if nh := f.get("next_hop"); nh != nil {
		var ok bool
		if a.NextHop, ok = d.addr(nh, f.at("next_hop")); ok && good && a.NextHop.Is4() != a.Prefix.Addr().Is4() {
			d.errorf(nh, "%s: %s is %s but the prefix %s is %s", f.at("next_hop"), a.NextHop, family(a.NextHop), a.Prefix, family(a.Prefix.Addr()))
		}
	} else if good && a.Prefix.Addr().Is6() {
		// An IPv6 route needs a global next hop; the session's local
		// address is IPv4 (or link-local) on most peerings.
		d.errorAt(f.line, "%s: IPv6 prefix %s needs an explicit next_hop", where, a.Prefix)
	}
	items, ok := f.list("pools")
	if f.get("pools") == nil || ok && len(items) == 0 {
		d.errorAt(f.keyLine("pools"), "%s: needs at least one pool whose health keeps the route", where)
	}
	for _, it := range items {
		name, ok := d.str(it, f.at("pools"))
		if !ok {
			continue
		}
		if _, ok := cfg.Pools[name]; !ok {
			d.errorf(it, "%s: no pool named %q (pools: %s)", f.at("pools"), name, strings.Join(cfg.PoolNames, ", "))
		}
		a.Pools = append(a.Pools, name)
	}
	f.int("min_healthy", 0, noMax, &a.MinHealthy)
	f.float("min_healthy_fraction", 0, 1, &a.MinHealthyFraction)
	a.Communities, _ = each(f, "communities", d.community)
	f.uint32("med", 0, &a.MED)
	f.int("prepend", 0, maxPrepend, &a.Prepend)
	return a, good
}

// announcePrefix refuses host bits instead of masking them: announcing
// 192.0.2.0/24 when the file says 192.0.2.53/24 would surprise everyone.
func (d *decoder) announcePrefix(n *yaml.Node, where string) (netip.Prefix, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		d.errorf(n, "%s: expected a prefix like 192.0.2.53/32 or 2001:db8::53/128, got %q", where, s)
		return netip.Prefix{}, false
	}
	if p != p.Masked() {
		d.errorf(n, "%s: %s has host bits set (did you mean %s?)", where, p, p.Masked())
		return netip.Prefix{}, false
	}
	return p, true
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
