package ebpf

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// EtherTypes and IP protocol numbers the tests craft frames with.
const (
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherARP   = 0x0806
	ether8021Q = 0x8100
	ether8021A = 0x88a8
	protoTCP   = 6
	protoUDP   = 17
	protoFrag6 = 44 // IPv6 fragment header
)

var (
	clientMAC = []byte{0x02, 0, 0, 0, 0, 0x0c}
	serverMAC = []byte{0x02, 0, 0, 0, 0, 0x05}
)

// frame describes a test frame: Ethernet, up to a few VLAN tags, IPv4 or
// IPv6, and (unless proto says otherwise) UDP with a DNS payload. The zero
// values of the knobs give a well-formed frame.
type frame struct {
	vlans        []uint16 // TPIDs, outermost first
	src, dst     netip.AddrPort
	ipOpts       []byte // IPv4 options, a multiple of 4 bytes
	proto        uint8  // IPv4 protocol / IPv6 next header; default UDP
	mf           bool   // IPv4 more-fragments
	fragOff      uint16 // IPv4 fragment offset, in 8-byte units
	payload      []byte // UDP payload
	udpLenDelta  int    // added to the UDP length field
	ipLenDelta   int    // added to the IPv4 total / IPv6 payload length
	pad          int    // bytes of Ethernet padding after the datagram
	etherTypeRaw uint16 // if set, the EtherType after the tags (e.g. ARP)
}

// bytes builds the frame with correct checksums.
func (f frame) bytes() []byte {
	b := append(append([]byte{}, serverMAC...), clientMAC...)
	for _, tpid := range f.vlans {
		b = binary.BigEndian.AppendUint16(b, tpid)
		b = binary.BigEndian.AppendUint16(b, 100) // VLAN ID
	}
	v6 := f.dst.Addr().Is6()
	et := uint16(etherIPv4)
	if v6 {
		et = etherIPv6
	}
	if f.etherTypeRaw != 0 {
		et = f.etherTypeRaw
	}
	b = binary.BigEndian.AppendUint16(b, et)
	proto := f.proto
	if proto == 0 {
		proto = protoUDP
	}
	udp := binary.BigEndian.AppendUint16(nil, f.src.Port())
	udp = binary.BigEndian.AppendUint16(udp, f.dst.Port())
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(f.payload)+f.udpLenDelta))
	udp = append(udp, 0, 0)
	udp = append(udp, f.payload...)
	if proto == protoUDP {
		binary.BigEndian.PutUint16(udp[6:], udpChecksum(f.src.Addr(), f.dst.Addr(), udp))
	}
	if v6 {
		ip := []byte{0x60, 0, 0, 0}
		ip = binary.BigEndian.AppendUint16(ip, uint16(len(udp)+f.ipLenDelta))
		ip = append(ip, proto, 64)
		s, d := f.src.Addr().As16(), f.dst.Addr().As16()
		ip = append(append(ip, s[:]...), d[:]...)
		b = append(append(b, ip...), udp...)
	} else {
		hl := 20 + len(f.ipOpts)
		ip := []byte{0x40 | byte(hl/4), 0}
		ip = binary.BigEndian.AppendUint16(ip, uint16(hl+len(udp)+f.ipLenDelta))
		ip = append(ip, 0x12, 0x34) // ID
		fo := f.fragOff
		if f.mf {
			fo |= 0x2000
		}
		ip = binary.BigEndian.AppendUint16(ip, fo)
		ip = append(ip, 64, proto, 0, 0)
		s, d := f.src.Addr().As4(), f.dst.Addr().As4()
		ip = append(append(ip, s[:]...), d[:]...)
		ip = append(ip, f.ipOpts...)
		binary.BigEndian.PutUint16(ip[10:], ^csumFold(csumAdd(0, ip)))
		b = append(append(b, ip...), udp...)
	}
	return append(b, make([]byte, f.pad)...)
}

// csumAdd adds b to a one's-complement sum as big-endian 16-bit words.
func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// udpChecksum computes the checksum of a UDP datagram (its checksum field
// zero) with the pseudo-header for src and dst.
func udpChecksum(src, dst netip.Addr, udp []byte) uint16 {
	sum := csumAdd(0, src.AsSlice())
	sum = csumAdd(sum, dst.AsSlice())
	sum += protoUDP + uint32(len(udp))
	c := ^csumFold(csumAdd(sum, udp))
	if c == 0 {
		c = 0xffff
	}
	return c
}

// query returns a packed query for name with an OPT record (so that the
// TC answer's trimming shows), after mutate, if any, has changed it.
func query(name string, mutate func(*dns.Msg)) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Id = 0x4242
	m.SetEdns0(1232, true)
	if mutate != nil {
		mutate(m)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// Addresses used by the frame tests.
var (
	vip4      = netip.MustParseAddrPort("192.0.2.53:53")
	vip6      = netip.MustParseAddrPort("[2001:db8:53::53]:53")
	client4   = netip.MustParseAddrPort("198.51.100.10:40000")
	client4b  = netip.MustParseAddrPort("198.51.100.11:40001") // same /24 as client4
	client4c  = netip.MustParseAddrPort("198.51.101.10:40002") // another /24
	client6   = netip.MustParseAddrPort("[2001:db8:100::10]:40000")
	client6b  = netip.MustParseAddrPort("[2001:db8:100:ff::10]:40001") // same /56 as client6
	client6c  = netip.MustParseAddrPort("[2001:db8:101::10]:40002")    // another /56
	blocked4  = netip.MustParseAddrPort("203.0.113.7:40000")
	blocked6  = netip.MustParseAddrPort("[2001:db8:bad::7]:40000")
	blockList = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}
)

// q4 and q6 are well-formed queries from the ordinary clients.
func q4() frame { return frame{src: client4, dst: vip4, payload: query("example.com", nil)} }
func q6() frame { return frame{src: client6, dst: vip6, payload: query("example.com", nil)} }
