// Package cidrset finds an address among many prefixes without a scan, for
// the client conditions of rules; Canonical is the one form prefixes and
// clients are compared in (masked, IPv4-mapped turned into IPv4).
//
// It is a leaf: it knows no config or packet, and never imports proxy.
package cidrset

import (
	"cmp"
	"encoding/binary"
	"math"
	"net/netip"
	"slices"
)

// Set finds an address among many prefixes without a scan: prefixes
// are grouped by length, each group a sorted list of masked addresses, so a
// lookup is one mask and one binary search per distinct length (at most 33
// for IPv4, 129 for IPv6, a handful in practice). Small sets are scanned.
type Set struct {
	small []netip.Prefix // used when the set has few prefixes
	v4    []cidrGroup4
	v6    []cidrGroup6
}

type cidrGroup4 struct {
	bits  int
	addrs []uint32
}

type cidrGroup6 struct {
	bits  int
	addrs [][2]uint64
}

// smallCIDRSet is the size below which a scan beats the grouped search.
const smallCIDRSet = 8

// New makes a set of the prefixes ps.
func New(ps []netip.Prefix) Set {
	var s Set
	if len(ps) <= smallCIDRSet {
		for _, p := range ps {
			s.small = append(s.small, Canonical(p))
		}
		return s
	}
	by4 := map[int][]uint32{}
	by6 := map[int][][2]uint64{}
	for _, p := range ps {
		p = Canonical(p)
		if p.Addr().Is4() {
			by4[p.Bits()] = append(by4[p.Bits()], v4bits(p.Addr()))
		} else {
			by6[p.Bits()] = append(by6[p.Bits()], v6bits(p.Addr()))
		}
	}
	for bits, as := range by4 {
		slices.Sort(as)
		s.v4 = append(s.v4, cidrGroup4{bits, slices.Compact(as)})
	}
	for bits, as := range by6 {
		slices.SortFunc(as, cmp6)
		s.v6 = append(s.v6, cidrGroup6{bits, slices.Compact(as)})
	}
	// Longest first: no difference to the answer, but the most specific
	// lists (host routes) tend to be the big ones worth trying first.
	slices.SortFunc(s.v4, func(a, b cidrGroup4) int { return b.bits - a.bits })
	slices.SortFunc(s.v6, func(a, b cidrGroup6) int { return b.bits - a.bits })
	return s
}

// Empty reports whether the set has no prefix.
func (s *Set) Empty() bool { return len(s.small) == 0 && len(s.v4) == 0 && len(s.v6) == 0 }

// Contains reports whether a (unmapped) is in one of the prefixes.
func (s *Set) Contains(a netip.Addr) bool {
	for _, p := range s.small {
		if p.Contains(a) {
			return true
		}
	}
	if a.Is4() {
		x := v4bits(a)
		for _, g := range s.v4 {
			m := x &^ (math.MaxUint32 >> g.bits)
			if g.bits == 0 {
				m = 0
			}
			if _, ok := slices.BinarySearch(g.addrs, m); ok {
				return true
			}
		}
		return false
	}
	x := v6bits(a)
	for _, g := range s.v6 {
		if _, ok := slices.BinarySearchFunc(g.addrs, mask6(x, g.bits), cmp6); ok {
			return true
		}
	}
	return false
}

// Canonical masks p and turns IPv4-mapped IPv6 prefixes into IPv4,
// as clients are compared unmapped.
func Canonical(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return netip.PrefixFrom(a, p.Bits()).Masked()
}

func v4bits(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func v6bits(a netip.Addr) [2]uint64 {
	b := a.As16()
	return [2]uint64{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func mask6(x [2]uint64, bits int) [2]uint64 {
	switch {
	case bits <= 0:
		return [2]uint64{}
	case bits < 64:
		return [2]uint64{x[0] &^ (math.MaxUint64 >> bits), 0}
	case bits < 128:
		return [2]uint64{x[0], x[1] &^ (math.MaxUint64 >> (bits - 64))}
	}
	return x
}

func cmp6(a, b [2]uint64) int {
	if c := cmp.Compare(a[0], b[0]); c != 0 {
		return c
	}
	return cmp.Compare(a[1], b[1])
}
