package proxyproto

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestAppendV2(t *testing.T) {
	ap := netip.MustParseAddrPort
	cases := []struct {
		name     string
		src, dst netip.AddrPort
		stream   bool
		fam      byte // the family and protocol byte
		wantDst  netip.AddrPort
		length   int
	}{
		{"IPv4 over UDP", ap("192.0.2.7:4242"), ap("198.51.100.1:53"), false, 0x12, ap("198.51.100.1:53"), 28},
		{"IPv4 over TCP", ap("192.0.2.7:4242"), ap("198.51.100.1:53"), true, 0x11, ap("198.51.100.1:53"), 28},
		{"IPv6 over UDP", ap("[2001:db8::7]:4242"), ap("[2001:db8::1]:53"), false, 0x22, ap("[2001:db8::1]:53"), 52},
		{"v4-mapped client stays IPv4", ap("[::ffff:192.0.2.7]:4242"), ap("198.51.100.1:53"), false, 0x12, ap("198.51.100.1:53"), 28},
		{"IPv4 client on a dual-stack wildcard", ap("192.0.2.7:4242"), ap("[::]:53"), false, 0x12, ap("0.0.0.0:53"), 28},
		{"IPv6 client, destination unknown", ap("[2001:db8::7]:4242"), netip.AddrPort{}, true, 0x21, ap("[::]:0"), 52},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := AppendV2(make([]byte, 0, MaxV2Len), tc.src, tc.dst, tc.stream)
			if len(b) != tc.length || len(b) > MaxV2Len || b[13] != tc.fam {
				t.Fatalf("header % x: length %d, family byte %#x; want %d, %#x", b, len(b), b[13], tc.length, tc.fam)
			}
			src, local, err := ReadHeader(bytes.NewReader(b))
			if err != nil || local || src != netip.AddrPortFrom(tc.src.Addr().Unmap(), tc.src.Port()) {
				t.Fatalf("read back %v local=%v err=%v, want %v", src, local, err, tc.src)
			}
			var d netip.AddrPort
			if tc.length == 28 {
				d = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[20:24])), uint16(b[26])<<8|uint16(b[27]))
			} else {
				d = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[32:48])), uint16(b[50])<<8|uint16(b[51]))
			}
			if d != tc.wantDst {
				t.Fatalf("destination %v, want %v", d, tc.wantDst)
			}
		})
	}
	t.Run("LOCAL", func(t *testing.T) {
		_, local, err := ReadHeader(bytes.NewReader(AppendV2Local(nil)))
		if err != nil || !local {
			t.Fatalf("local=%v err=%v, want a LOCAL header", local, err)
		}
	})
	t.Run("appended without allocating", func(t *testing.T) {
		buf := make([]byte, 0, MaxV2Len)
		src, dst := ap("[2001:db8::7]:4242"), ap("[2001:db8::1]:53")
		if n := testing.AllocsPerRun(100, func() { buf = AppendV2(buf[:0], src, dst, false) }); n != 0 {
			t.Fatalf("%v allocations per header", n)
		}
	})
}
