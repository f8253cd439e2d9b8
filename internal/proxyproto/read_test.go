package proxyproto

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestReadHeader(t *testing.T) {
	v4 := AppendV2(nil, netip.MustParseAddrPort("192.0.2.7:4242"), netip.MustParseAddrPort("198.51.100.1:53"), true)
	v6 := AppendV2(nil, netip.MustParseAddrPort("[2001:db8::7]:4242"), netip.MustParseAddrPort("[2001:db8::1]:53"), true)
	local := append(append([]byte(nil), Signature...), 0x20, 0x00, 0, 0)
	withTLV := append(append([]byte(nil), v4...), 0x04, 0, 1, 'x') // a NOOP TLV
	withTLV[15] += 4
	tooLong := append(append([]byte(nil), Signature...), 0x21, 0x11, 0xFF, 0xFF)
	shortBlock := append(append([]byte(nil), Signature...), 0x21, 0x11, 0, 4, 1, 2, 3, 4)
	v1 := []byte("PROXY TCP4 192.0.2.7 198.51.100.1 4242 53\r\n")
	badCmd := append([]byte(nil), v4...)
	badCmd[12] = 0x22
	badVer := append([]byte(nil), v4...)
	badVer[12] = 0x11
	tests := []struct {
		name    string
		in      []byte
		want    netip.AddrPort
		local   bool
		wantErr error
	}{
		{"IPv4 source", v4, netip.MustParseAddrPort("192.0.2.7:4242"), false, nil},
		{"IPv6 source", v6, netip.MustParseAddrPort("[2001:db8::7]:4242"), false, nil},
		{"TLVs are skipped", withTLV, netip.MustParseAddrPort("192.0.2.7:4242"), false, nil},
		{"LOCAL keeps the peer's address", local, netip.AddrPort{}, true, nil},
		{"v1 text header is refused", v1, netip.AddrPort{}, false, ErrSignature},
		{"header longer than the bound", tooLong, netip.AddrPort{}, false, ErrTooLong},
		{"address block too short", shortBlock, netip.AddrPort{}, false, ErrAddress},
		{"unknown command", badCmd, netip.AddrPort{}, false, ErrCommand},
		{"version 1 in a v2 header", badVer, netip.AddrPort{}, false, ErrVersion},
		{"truncated header", v4[:20], netip.AddrPort{}, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(append(append([]byte(nil), tc.in...), "rest"...))
			src, local, err := ReadHeader(r)
			if tc.name == "truncated header" {
				r = bytes.NewReader(tc.in)
				if _, _, err = ReadHeader(r); err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if src != tc.want || local != tc.local {
				t.Errorf("got %v local=%v, want %v local=%v", src, local, tc.want, tc.local)
			}
			if rest := r.Len(); rest != 4 {
				t.Errorf("header read consumed what followed it: %d bytes left, want 4", rest)
			}
		})
	}
}
