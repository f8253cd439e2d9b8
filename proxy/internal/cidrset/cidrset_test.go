package cidrset

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestCIDRSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ps []netip.Prefix
	for i := 0; i < 2000; i++ {
		var p netip.Prefix
		if i%2 == 0 {
			a := netip.AddrFrom4([4]byte{byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))})
			p = netip.PrefixFrom(a, 8+int(rng.UintN(25))).Masked()
		} else {
			var b [16]byte
			b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
			for j := 4; j < 16; j++ {
				b[j] = byte(rng.UintN(256))
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 32+int(rng.UintN(97))).Masked()
		}
		ps = append(ps, p)
	}
	ps = append(ps, netip.MustParsePrefix("::ffff:203.0.113.0/120")) // mapped: means 203.0.113.0/24
	s := New(ps)
	if len(s.small) != 0 {
		t.Fatal("a big set must not be scanned")
	}
	linear := func(a netip.Addr) bool {
		for _, p := range ps {
			if Canonical(p).Contains(a) {
				return true
			}
		}
		return false
	}
	probe := func(a netip.Addr) {
		if got, want := s.Contains(a), linear(a); got != want {
			t.Fatalf("%s: contains %v, linear scan %v", a, got, want)
		}
	}
	for _, p := range ps {
		probe(Canonical(p).Addr()) // every listed prefix is found
	}
	probe(netip.MustParseAddr("203.0.113.77"))
	for i := 0; i < 20000; i++ {
		probe(netip.AddrFrom4([4]byte{byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256)), byte(rng.UintN(256))}))
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		b[4] = byte(rng.UintN(256))
		probe(netip.AddrFrom16(b))
	}
}
