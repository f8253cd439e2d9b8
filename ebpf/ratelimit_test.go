package ebpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
)

// Verdict indexes, as in enum verdict in xdp.c.
const (
	vPass = iota
	vBlocked
	vRateLimited
	vMalformed
	vAnswered
	vTruncated
)

// expect runs f and fails unless the program returned action and counted
// verdict.
func expect(t *testing.T, o *objects, what string, f frame, action uint32, verdict int) []byte {
	t.Helper()
	ret, out, v := runFrame(t, o, f.bytes())
	if ret != action || v != verdict {
		t.Fatalf("%s: got %s counted %s, want %s counted %s", what, actionNames[ret], verdictName(v), actionNames[action], verdictName(verdict))
	}
	return out
}

func from(f frame, src netip.AddrPort) frame { f.src = src; return f }

func TestRateLimitBudgetPerPrefix(t *testing.T) {
	// One query a second: nothing refills while the test runs.
	o := loadTest(t, testConfig(config.RateLimit{QPS: 1, Burst: 5}))
	for _, fam := range []struct {
		name                   string
		q                      frame
		same, other, blockedIP netip.AddrPort
	}{
		{"IPv4 /24", q4(), client4b, client4c, blocked4},
		{"IPv6 /56", q6(), client6b, client6c, blocked6},
	} {
		t.Run(fam.name, func(t *testing.T) {
			for range 3 { // malformed queries cost nothing
				bad := fam.q
				bad.payload = bad.payload[:12]
				expect(t, o, "malformed", bad, xdpDrop, vMalformed)
			}
			for i := range 5 {
				expect(t, o, "within the burst #"+string(rune('1'+i)), fam.q, xdpPass, vPass)
			}
			expect(t, o, "over the burst", fam.q, xdpDrop, vRateLimited)
			expect(t, o, "same prefix shares the budget", from(fam.q, fam.same), xdpDrop, vRateLimited)
			expect(t, o, "another prefix has its own", from(fam.q, fam.other), xdpPass, vPass)
			expect(t, o, "blocklist comes first", from(fam.q, fam.blockedIP), xdpDrop, vBlocked)
		})
	}

	// Longer prefixes make new keys: the buckets start empty again.
	if err := o.setRateLimit(config.RateLimit{QPS: 1, Burst: 5, V4Prefix: 32, V6Prefix: 64}); err != nil {
		t.Fatal(err)
	}
	expect(t, o, "after a prefix change", q4(), xdpPass, vPass)
	expect(t, o, "a /32 is its own prefix now", from(q4(), client4b), xdpPass, vPass)
}

func TestRateLimitRefills(t *testing.T) {
	const qps, burst = 50, 3
	interval := time.Second / qps
	o := loadTest(t, testConfig(config.RateLimit{QPS: qps, Burst: burst}))
	drain := func() time.Time {
		for i := 0; ; i++ {
			if ret, _, _ := runFrame(t, o, q4().bytes()); ret == xdpDrop {
				return time.Now()
			}
			if i > 10*burst {
				t.Fatal("the bucket never ran dry")
			}
		}
	}
	// Refill is capped at the burst, however long the source was quiet.
	drain()
	time.Sleep(3 * burst * interval)
	for i := range burst {
		expect(t, o, "refilled #"+string(rune('1'+i)), q4(), xdpPass, vPass)
	}
	expect(t, o, "past the burst", q4(), xdpDrop, vRateLimited)

	// And at the configured rate: the next query is allowed about one
	// interval after the bucket ran dry, not before.
	dry := drain()
	deadline := dry.Add(20 * interval)
	for {
		ret, _, _ := runFrame(t, o, q4().bytes())
		if ret == xdpPass {
			if waited := time.Since(dry); waited < interval*9/10 {
				t.Fatalf("a query passed %v after the bucket ran dry; the interval is %v", waited, interval)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no query passed within %v of the bucket running dry", 20*interval)
		}
		time.Sleep(interval / 10)
	}
}

func TestTCAnswers(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{QPS: 1, Burst: 1, TCSlip: 2}))
	cases := []struct {
		name string
		f    frame
	}{
		{"IPv4, odd length", frame{src: client4, dst: vip4, payload: query("a.example.com", nil)}},
		{"IPv4, even length", frame{src: client4c, dst: vip4, payload: query("ab.example.com", nil), pad: 20}},
		{"IPv6, odd length", frame{src: client6, dst: vip6, payload: query("a.example.com", nil)}},
		{"IPv6, even length", frame{src: client6c, dst: vip6, payload: query("ab.example.com", nil)}},
		{"QinQ IPv4", frame{vlans: []uint16{ether8021A, ether8021Q}, src: netip.MustParseAddrPort("198.51.102.1:5353"), dst: vip4, payload: query("example.com", nil)}},
		{"802.1Q IPv6", frame{vlans: []uint16{ether8021Q}, src: netip.MustParseAddrPort("[2001:db8:102::1]:5353"), dst: vip6, payload: query("example.com", nil)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			expect(t, o, "first query", c.f, xdpPass, vPass)
			expect(t, o, "first over the limit", c.f, xdpDrop, vRateLimited)
			out := expect(t, o, "second over the limit", c.f, xdpTX, vTruncated)
			checkTCAnswer(t, c.f, out)
			expect(t, o, "third over the limit", c.f, xdpDrop, vRateLimited)
			out = expect(t, o, "fourth over the limit", c.f, xdpTX, vTruncated)
			checkTCAnswer(t, c.f, out)
		})
	}
	// NOTIMP and FORMERR material is charged like any query, but a TC=1
	// answer (opcode QUERY, one question) would misstate what it asked.
	for _, c := range []struct {
		name string
		f    frame
	}{
		{"never to NOTIFY", frame{src: netip.MustParseAddrPort("198.51.104.1:5353"), dst: vip4,
			payload: query("example.com", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })}},
		{"never to QDCOUNT 0", frame{src: netip.MustParseAddrPort("[2001:db8:104::1]:5353"), dst: vip6,
			payload: query("example.com", func(m *dns.Msg) { m.Question = nil })}},
	} {
		t.Run(c.name, func(t *testing.T) {
			expect(t, o, "first", c.f, xdpPass, vPass)
			for range 4 {
				expect(t, o, "over the limit", c.f, xdpDrop, vRateLimited)
			}
		})
	}
	t.Run("never with IPv4 options", func(t *testing.T) {
		f := frame{src: netip.MustParseAddrPort("198.51.103.1:5353"), dst: vip4, ipOpts: []byte{1, 1, 1, 0}, payload: query("example.com", nil)}
		expect(t, o, "first query", f, xdpPass, vPass)
		for range 4 {
			expect(t, o, "over the limit", f, xdpDrop, vRateLimited)
		}
	})
}

// checkTCAnswer checks that out is the empty TC=1 answer to the query q:
// addresses and ports swapped, lengths and checksums right, the question
// kept and the additional section gone.
func checkTCAnswer(t *testing.T, q frame, out []byte) {
	t.Helper()
	in := q.bytes()
	l3 := 14 + 4*len(q.vlans)
	if !bytes.Equal(out[:6], in[6:12]) || !bytes.Equal(out[6:12], in[:6]) {
		t.Errorf("MACs not swapped: %x", out[:12])
	}
	if !bytes.Equal(out[12:l3], in[12:l3]) {
		t.Errorf("VLAN tags or EtherType changed: %x, was %x", out[12:l3], in[12:l3])
	}
	var src, dst netip.Addr
	var udp []byte
	if q.dst.Addr().Is4() {
		ip := out[l3 : l3+20]
		if csumFold(csumAdd(0, ip)) != 0xffff {
			t.Errorf("IPv4 header checksum wrong: %x", ip)
		}
		if ip[8] != 64 {
			t.Errorf("TTL %d", ip[8])
		}
		if n := int(binary.BigEndian.Uint16(ip[2:])); n != len(out)-l3 {
			t.Errorf("IPv4 total length %d, frame has %d after the Ethernet header", n, len(out)-l3)
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = out[l3+20:]
	} else {
		ip := out[l3 : l3+40]
		if n := int(binary.BigEndian.Uint16(ip[4:])); n != len(out)-l3-40 {
			t.Errorf("IPv6 payload length %d, frame has %d after the IPv6 header", n, len(out)-l3-40)
		}
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = out[l3+40:]
	}
	if src != q.dst.Addr() || dst != q.src.Addr() {
		t.Errorf("addresses %v -> %v, want %v -> %v", src, dst, q.dst.Addr(), q.src.Addr())
	}
	if sp, dp := binary.BigEndian.Uint16(udp), binary.BigEndian.Uint16(udp[2:]); sp != q.dst.Port() || dp != q.src.Port() {
		t.Errorf("ports %d -> %d, want %d -> %d", sp, dp, q.dst.Port(), q.src.Port())
	}
	if n := int(binary.BigEndian.Uint16(udp[4:])); n != len(udp) {
		t.Errorf("UDP length %d, datagram is %d bytes", n, len(udp))
	}
	zeroed := append([]byte{}, udp...)
	zeroed[6], zeroed[7] = 0, 0
	if got, want := binary.BigEndian.Uint16(udp[6:]), udpChecksum(src, dst, zeroed); got != want {
		t.Errorf("UDP checksum %#04x, want %#04x", got, want)
	}
	var qm, am dns.Msg
	if err := qm.Unpack(q.payload); err != nil {
		t.Fatal(err)
	}
	if err := am.Unpack(udp[8:]); err != nil {
		t.Fatalf("the answer does not parse: %v (%x)", err, udp[8:])
	}
	if !am.Response || !am.Truncated || am.Id != qm.Id || am.Opcode != dns.OpcodeQuery || am.Rcode != dns.RcodeSuccess ||
		am.RecursionDesired != qm.RecursionDesired || am.Authoritative || am.RecursionAvailable {
		t.Errorf("answer header wrong:\n%v", am.MsgHdr)
	}
	if len(am.Question) != 1 || am.Question[0] != qm.Question[0] || len(am.Answer)+len(am.Ns)+len(am.Extra) != 0 {
		t.Errorf("answer sections wrong:\n%v", &am)
	}
}
