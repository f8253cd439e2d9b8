package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

var (
	xdpVIP4    = netip.MustParseAddrPort("192.0.2.53:53")
	xdpVIP6    = netip.MustParseAddrPort("[2001:db8:53::53]:53")
	xdpClient4 = netip.MustParseAddrPort("198.51.100.10:40000")
	xdpClient6 = netip.MustParseAddrPort("[2001:db8:100::10]:40000")
)

// xdpFrame wraps a DNS payload from src to dst in Ethernet, IP and UDP,
// checksums included, as it would arrive at the NIC.
func xdpFrame(src, dst netip.AddrPort, payload []byte) []byte {
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], src.Port())
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	var ip []byte
	var ethType uint16
	if src.Addr().Is4() {
		ethType = 0x0800
		ip = make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], ^onesSum(0, ip))
	} else {
		ethType = 0x86dd
		ip = make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, 17, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		s, d := src.Addr().As16(), dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	binary.BigEndian.PutUint16(udp[6:], udpSum(src.Addr(), dst.Addr(), udp))
	eth := []byte{2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, byte(ethType >> 8), byte(ethType)}
	return append(append(eth, ip...), udp...)
}

func onesSum(sum uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

func udpSum(src, dst netip.Addr, udp []byte) uint16 {
	var pseudo []byte
	pseudo = append(pseudo, src.AsSlice()...)
	pseudo = append(pseudo, dst.AsSlice()...)
	pseudo = append(pseudo, 0, 17, byte(len(udp)>>8), byte(len(udp)))
	saved := binary.BigEndian.Uint16(udp[6:])
	binary.BigEndian.PutUint16(udp[6:], 0)
	s := onesSum(uint32(onesSum(0, pseudo)), udp)
	binary.BigEndian.PutUint16(udp[6:], saved)
	if c := ^s; c != 0 {
		return c
	}
	return 0xffff
}

// xdpReply checks that out is a well-formed UDP answer from dst back to
// src (addresses and ports swapped, checksums right) and returns its DNS
// payload.
func xdpReply(t *testing.T, src, dst netip.AddrPort, out []byte) []byte {
	t.Helper()
	l3 := 14
	var from, to netip.Addr
	var udp []byte
	if src.Addr().Is4() {
		ip := out[l3 : l3+20]
		if onesSum(0, ip) != 0xffff {
			t.Fatalf("IPv4 header checksum does not verify: % x", ip)
		}
		from, to = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = out[l3+20 : l3+int(binary.BigEndian.Uint16(ip[2:]))]
	} else {
		ip := out[l3 : l3+40]
		from, to = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = out[l3+40 : l3+40+int(binary.BigEndian.Uint16(ip[4:]))]
	}
	if from != dst.Addr() || to != src.Addr() {
		t.Fatalf("answer from %v to %v, want %v to %v", from, to, dst.Addr(), src.Addr())
	}
	if got := binary.BigEndian.Uint16(udp[0:]); got != dst.Port() || binary.BigEndian.Uint16(udp[2:]) != src.Port() {
		t.Fatalf("answer ports %d -> %d", got, binary.BigEndian.Uint16(udp[2:]))
	}
	if got, want := binary.BigEndian.Uint16(udp[6:]), udpSum(from, to, udp); got != want {
		t.Fatalf("UDP checksum %#x, want %#x", got, want)
	}
	return udp[8:]
}

// rawExchange sends payload to addr as it is and returns the raw answer.
func rawExchange(t *testing.T, addr string, payload []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(payload); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

// TestLabXDPAnswers is the differential test of the XDP answer cache: for
// each shape of answer, the bytes the XDP program sends for a query are the
// bytes the proxy's own cache sends for the same query, and what a purge, a
// reload or an expiry removes, XDP stops serving.
func TestLabXDPAnswers(t *testing.T) {
	testlab.RequireRoot(t)
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{ExtraLocalData: []string{
		"alias.demo.test. 300 IN CNAME www.demo.test.",
		"short.demo.test. 3 IN A 192.0.2.52",
	}})
	xdp, err := ebpf.NewRunner(&config.XDP{Mode: "generic", VIPs: []netip.AddrPort{xdpVIP4, xdpVIP6}})
	if err != nil {
		t.Fatalf("load the XDP program: %v", err)
	}
	// Closed after the proxy stops (cleanups run last first).
	t.Cleanup(func() { xdp.Close() })
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	yml := fmt.Sprintf(`listen: [{address: %q}]
acl: ["127.0.0.0/8", "198.51.100.0/24", "2001:db8:100::/64"]
pools:
  default:
    backends: [{name: r1, address: %q}]
    cache: {size: 1000, xdp_entries: 100}
`, addr, ub.Addr)
	l := runConfigDeps(t, addr, yml, Deps{Answers: xdp})

	edns := func(q *dns.Msg, do bool) *dns.Msg { q.SetEdns0(1232, do); return q }
	shapes := []struct {
		name string
		q    *dns.Msg
		v6   bool
	}{
		{"A, mixed case", dnstest.Query("WwW.DeMo.TeSt.", dns.TypeA), false},
		{"AAAA with EDNS and DO", edns(dnstest.Query("demo.test.", dns.TypeAAAA), true), false},
		{"a CNAME chain", dnstest.Query("alias.demo.test.", dns.TypeA), false},
		{"NXDOMAIN with its SOA", edns(dnstest.Query("nx.demo.test.", dns.TypeA), false), false},
		{"over IPv6", dnstest.Query("www.demo.test.", dns.TypeTXT), true},
		{"short TTL", dnstest.Query("short.demo.test.", dns.TypeA), false},
	}
	for _, s := range shapes {
		for i := 0; i < 3; i++ {
			if _, err := l.exchange("udp", s.q.Copy()); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		hits, err := xdp.AnswerHits()
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) == len(shapes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("published %d answers, want %d: %v", len(hits), len(shapes), hits)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// ask runs the query through XDP and returns its action and answer.
	ask := func(t *testing.T, q *dns.Msg, v6 bool) (uint32, []byte) {
		t.Helper()
		src, dst := xdpClient4, xdpVIP4
		if v6 {
			src, dst = xdpClient6, xdpVIP6
		}
		action, out, err := xdp.Run(xdpFrame(src, dst, dnstest.Pack(t, q)))
		if err != nil {
			t.Fatal(err)
		}
		if action != ebpf.XDP_TX {
			return action, nil
		}
		return action, xdpReply(t, src, dst, out)
	}

	for _, s := range shapes[:5] {
		t.Run(s.name, func(t *testing.T) {
			q := s.q.Copy()
			q.Id = 0xbeef
			// The XDP copy's TTLs are rewritten once a second, so they
			// may run up to a second ahead of the proxy's: publish now,
			// then compare. A second boundary may still fall between the
			// two answers; then again.
			var fromXDP, fromProxy []byte
			for try := 0; try < 5; try++ {
				l.p.xdp.Apply(nil)
				action, a := ask(t, q, s.v6)
				if action != ebpf.XDP_TX {
					t.Fatalf("XDP action %d, want XDP_TX", action)
				}
				fromXDP, fromProxy = a, rawExchange(t, l.addr, dnstest.Pack(t, q))
				if bytes.Equal(fromXDP, fromProxy) {
					break
				}
			}
			if !bytes.Equal(fromXDP, fromProxy) {
				x, p := new(dns.Msg), new(dns.Msg)
				_, _ = x.Unpack(fromXDP), p.Unpack(fromProxy)
				t.Fatalf("XDP answered\n% x\n%v\nthe proxy's cache\n% x\n%v", fromXDP, x, fromProxy, p)
			}
			var m dns.Msg
			if err := m.Unpack(fromXDP); err != nil {
				t.Fatalf("XDP's answer does not parse: %v", err)
			}
			if m.Id != 0xbeef || m.Question[0].Name != q.Question[0].Name {
				t.Errorf("answer id %#x question %q, want the query's", m.Id, m.Question[0].Name)
			}
		})
	}

	t.Run("a source outside the ACL passes", func(t *testing.T) {
		src := netip.MustParseAddrPort("203.0.113.9:40000")
		action, _, err := xdp.Run(xdpFrame(src, xdpVIP4, dnstest.Pack(t, dnstest.Query("www.demo.test.", dns.TypeA))))
		if err != nil || action != ebpf.XDP_PASS {
			t.Errorf("action %d, %v: want XDP_PASS", action, err)
		}
	})
	t.Run("a purge reaches XDP before it returns", func(t *testing.T) {
		if _, err := l.p.PurgeCache("alias.demo.test."); err != nil {
			t.Fatal(err)
		}
		if action, _ := ask(t, dnstest.Query("alias.demo.test.", dns.TypeA), false); action != ebpf.XDP_PASS {
			t.Errorf("purged name: action %d, want XDP_PASS", action)
		}
		if action, _ := ask(t, dnstest.Query("www.demo.test.", dns.TypeA), false); action != ebpf.XDP_TX {
			t.Errorf("another name: action %d, want XDP_TX", action)
		}
	})
	t.Run("an answer is never served past its expiry", func(t *testing.T) {
		// TTL 3 with prefetch: XDP serves it until a second before it
		// expires, so the last queries reach the proxy and refresh it.
		q := dnstest.Query("short.demo.test.", dns.TypeA)
		deadline := time.Now().Add(4 * time.Second)
		for time.Now().Before(deadline) {
			if action, _ := ask(t, q, false); action == ebpf.XDP_PASS {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Error("XDP kept serving a 3-second answer for 4 seconds")
	})
	t.Run("a reload with a rule on a name takes it out of XDP", func(t *testing.T) {
		cfg, err := config.Parse("lab.yaml", []byte(yml+`rules: [{match: {qname: ["www.demo.test."]}, action: {refuse: true}}]`+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		l.p.Reload(cfg)
		deadline := time.Now().Add(2 * time.Second)
		for {
			action, _ := ask(t, dnstest.Query("www.demo.test.", dns.TypeA), false)
			if action == ebpf.XDP_PASS {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("XDP still answers for a name a reloaded rule refuses")
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The rounds after the reload publish again what no rule touches.
		l.exchange("udp", edns(dnstest.Query("demo.test.", dns.TypeAAAA), true))
		time.Sleep(1500 * time.Millisecond)
		if action, _ := ask(t, dnstest.Query("www.demo.test.", dns.TypeA), false); action != ebpf.XDP_PASS {
			t.Errorf("the refused name came back to XDP: action %d", action)
		}
		if action, _ := ask(t, edns(dnstest.Query("demo.test.", dns.TypeAAAA), true), false); action != ebpf.XDP_TX {
			t.Errorf("a name no rule touches: action %d, want XDP_TX again", action)
		}
	})
}
