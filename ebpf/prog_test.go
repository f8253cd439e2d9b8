package ebpf

import (
	"bytes"
	"net/netip"
	"testing"

	cebpf "github.com/cilium/ebpf"
	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
)

// XDP actions, from linux/bpf.h.
const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3
)

var actionNames = map[uint32]string{0: "ABORTED", xdpDrop: "DROP", xdpPass: "PASS", xdpTX: "TX"}

// uncounted marks frames the program must leave alone without counting.
const uncounted = -1

// testConfig is the xdp section the program tests load.
func testConfig(rl config.RateLimit) *config.XDP {
	if rl.V4Prefix == 0 {
		rl.V4Prefix, rl.V6Prefix = 24, 56
	}
	return &config.XDP{Interface: "lo", Mode: "generic", VIPs: []netip.AddrPort{vip4, vip6}, RateLimit: rl, Blocklist: blockList}
}

// loadTest loads the program and fills its maps from cfg, as Run does,
// without attaching it anywhere: frames go through BPF_PROG_TEST_RUN.
func loadTest(t testing.TB, cfg *config.XDP) *objects {
	t.Helper()
	testlab.RequireRoot(t)
	o, err := loadObjects()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	static, err := check(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.syncVIPs(cfg.VIPs); err != nil {
		t.Fatal(err)
	}
	if err := o.setRateLimit(cfg.RateLimit); err != nil {
		t.Fatal(err)
	}
	if err := o.syncBlocks(static); err != nil {
		t.Fatal(err)
	}
	return o
}

// runFrame runs one frame through the program and returns the action,
// the frame as the program left it, and which verdict it counted
// (uncounted if none).
func runFrame(t *testing.T, o *objects, in []byte) (uint32, []byte, int) {
	t.Helper()
	before, err := o.counts()
	if err != nil {
		t.Fatal(err)
	}
	opts := &cebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+runSlack)}
	ret, err := o.AnyfrontXdp.Run(opts)
	if err != nil {
		t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
	}
	after, err := o.counts()
	if err != nil {
		t.Fatal(err)
	}
	counted := uncounted
	for v := range after {
		switch d := after[v] - before[v]; {
		case d == 1 && counted == uncounted:
			counted = v
		case d != 0:
			t.Fatalf("counters moved by %v -> %v", before, after)
		}
	}
	return ret, opts.DataOut, counted
}

func verdictName(v int) string {
	if v == uncounted {
		return "uncounted"
	}
	return verdictNames[v]
}

func TestProgramVerdicts(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	with := func(f frame, change func(*frame)) frame { change(&f); return f }
	msg := func(change func(*dns.Msg)) []byte { return query("example.com", change) }
	const pass, blocked, malformed = vPass, vBlocked, vMalformed
	cases := []struct {
		name    string
		f       frame
		action  uint32
		verdict int
	}{
		{"IPv4 query passes", q4(), xdpPass, pass},
		{"IPv6 query passes", q6(), xdpPass, pass},
		{"802.1Q-tagged query passes", with(q4(), func(f *frame) { f.vlans = []uint16{ether8021Q} }), xdpPass, pass},
		{"QinQ-tagged IPv6 query passes", with(q6(), func(f *frame) { f.vlans = []uint16{ether8021A, ether8021Q} }), xdpPass, pass},
		{"three VLAN tags are not parsed", with(q4(), func(f *frame) { f.vlans = []uint16{ether8021A, ether8021Q, ether8021Q} }), xdpPass, uncounted},
		{"IPv4 options are skipped", with(q4(), func(f *frame) { f.ipOpts = []byte{1, 1, 1, 0} }), xdpPass, pass},
		{"40 bytes of IPv4 options", with(q4(), func(f *frame) { f.ipOpts = bytes.Repeat([]byte{1}, 40) }), xdpPass, pass},
		{"blocked source behind IPv4 options", with(q4(), func(f *frame) { f.ipOpts = []byte{1, 1, 1, 0}; f.src = blocked4 }), xdpDrop, blocked},
		{"Ethernet padding is not payload", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Extra = nil }); f.pad = 30 }), xdpPass, pass},
		{"blocklisted IPv4 source", with(q4(), func(f *frame) { f.src = blocked4 }), xdpDrop, blocked},
		{"blocklisted IPv6 source", with(q6(), func(f *frame) { f.src = blocked6 }), xdpDrop, blocked},
		{"blocklisted source, malformed query", with(q4(), func(f *frame) { f.src = blocked4; f.payload = []byte{1} }), xdpDrop, blocked},

		{"other address untouched", with(q4(), func(f *frame) { f.dst = netip.MustParseAddrPort("192.0.2.54:53") }), xdpPass, uncounted},
		{"other port untouched", with(q4(), func(f *frame) { f.dst = netip.MustParseAddrPort("192.0.2.53:54") }), xdpPass, uncounted},
		{"other IPv6 address untouched", with(q6(), func(f *frame) { f.dst = netip.MustParseAddrPort("[2001:db8:53::54]:53") }), xdpPass, uncounted},
		{"blocklisted source to another address untouched", with(q4(), func(f *frame) { f.src = blocked4; f.dst = client4c }), xdpPass, uncounted},
		{"malformed datagram to another address untouched", with(q4(), func(f *frame) { f.dst = client4c; f.payload = []byte{0xff} }), xdpPass, uncounted},
		{"TCP to the VIP untouched", with(q4(), func(f *frame) { f.proto = protoTCP; f.src = blocked4 }), xdpPass, uncounted},
		{"ARP untouched", with(q4(), func(f *frame) { f.etherTypeRaw = etherARP }), xdpPass, uncounted},
		{"IPv4 first fragment passes", with(q4(), func(f *frame) { f.mf = true; f.src = blocked4 }), xdpPass, uncounted},
		{"IPv4 later fragment passes", with(q4(), func(f *frame) { f.fragOff = 185; f.src = blocked4 }), xdpPass, uncounted},
		{"IPv6 fragment header passes", with(q6(), func(f *frame) { f.proto = protoFrag6; f.src = blocked6 }), xdpPass, uncounted},
		{"IPv6 hop-by-hop header passes", with(q6(), func(f *frame) { f.proto = 0xff; f.src = blocked6 }), xdpPass, uncounted},

		{"response to the VIP", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Response = true }) }), xdpDrop, malformed},
		{"IPv6 response to the VIP", with(q6(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Response = true }) }), xdpDrop, malformed},
		// The proxy answers these itself (RFC 8906: never silence), so XDP
		// passes them; only what the proxy would drop too is malformed.
		{"opcode NOTIFY passes (NOTIMP)", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }) }), xdpPass, pass},
		{"opcode UPDATE passes (NOTIMP)", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }) }), xdpPass, pass},
		{"IPv6 opcode NOTIFY passes (NOTIMP)", with(q6(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }) }), xdpPass, pass},
		{"opcode 15 passes (NOTIMP)", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Opcode = 15 }) }), xdpPass, pass},
		{"no question passes (FORMERR)", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Question = nil; m.Extra = nil }) }), xdpPass, pass},
		{"no question with OPT passes (FORMERR)", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Question = nil }) }), xdpPass, pass},
		{"two questions pass (FORMERR)", with(q4(), func(f *frame) {
			f.payload = msg(func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) })
		}), xdpPass, pass},
		{"QDCOUNT 2 with no question bytes passes (FORMERR)", with(q4(), func(f *frame) {
			f.payload = []byte{0x42, 0x42, 0x01, 0, 0, 2, 0, 0, 0, 0, 0, 0}
		}), xdpPass, pass},
		{"blocklisted NOTIFY", with(q4(), func(f *frame) {
			f.src = blocked4
			f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify })
		}), xdpDrop, blocked},
		{"NOTIFY response to the VIP", with(q4(), func(f *frame) {
			f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify; m.Response = true })
		}), xdpDrop, malformed},
		{"response without a question", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Question = nil; m.Response = true }) }), xdpDrop, malformed},
		{"query with TC=1", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Truncated = true }) }), xdpPass, pass},                               // the proxy forwards it uncached (RFC 8906)
		{"IPv6 query with TC=1", with(q6(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Truncated = true }) }), xdpPass, pass},                          // the proxy forwards it uncached (RFC 8906)
		{"NOTIFY with TC=1", with(q4(), func(f *frame) { f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify; m.Truncated = true }) }), xdpPass, pass}, // the proxy forwards it uncached (RFC 8906)
		{"NOTIFY with its question cut", with(q4(), func(f *frame) {
			f.payload = msg(func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify; m.Extra = nil })
			f.payload = f.payload[:len(f.payload)-2]
		}), xdpDrop, malformed},
		{"NOTIFY with a compression pointer", with(q4(), func(f *frame) {
			f.payload = append([]byte{0x42, 0x42, 0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0}, 0xc0, 0x0c, 0, 6, 0, 1)
		}), xdpDrop, malformed},
		{"11 bytes", with(q4(), func(f *frame) { f.payload = []byte{0x42, 0x42, 0x01, 0, 0, 0, 0, 0, 0, 0, 0} }), xdpDrop, malformed},
		{"header only", with(q4(), func(f *frame) { f.payload = f.payload[:12] }), xdpDrop, malformed},
		{"question cut after the name", with(q4(), func(f *frame) { f.payload = f.payload[:12+13+2] }), xdpDrop, malformed},
		{"empty datagram", with(q4(), func(f *frame) { f.payload = nil }), xdpDrop, malformed},
		{"root name question passes", with(q4(), func(f *frame) { f.payload = query(".", func(m *dns.Msg) { m.Extra = nil }) }), xdpPass, pass},
		{"compression pointer in the question", with(q4(), func(f *frame) {
			f.payload = append(f.payload[:12:12], 0xc0, 0x0c, 0, 1, 0, 1)
		}), xdpDrop, malformed},
		{"longest name passes", with(q4(), func(f *frame) { f.payload = query(longName(255), nil) }), xdpPass, pass},
		{"name over 255 bytes", with(q4(), func(f *frame) { f.payload = rawQuery(longLabels(256)) }), xdpDrop, malformed},
		{"UDP length beyond the IP length", with(q4(), func(f *frame) { f.udpLenDelta = 4; f.pad = 4 }), xdpDrop, malformed},
		{"UDP length beyond the frame", with(q6(), func(f *frame) { f.udpLenDelta = 4; f.ipLenDelta = 4 }), xdpDrop, malformed},
		{"UDP length under 8", with(q4(), func(f *frame) { f.udpLenDelta = -len(f.payload) - 1 }), xdpDrop, malformed},
		{"UDP length cuts the question", with(q4(), func(f *frame) { f.udpLenDelta = -len(f.payload) + 14 }), xdpDrop, malformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := c.f.bytes()
			ret, out, v := runFrame(t, o, in)
			if ret != c.action || v != c.verdict {
				t.Errorf("got %s counted %s, want %s counted %s", actionNames[ret], verdictName(v), actionNames[c.action], verdictName(c.verdict))
			}
			if ret == xdpPass && !bytes.Equal(in, out) {
				t.Errorf("a passed frame was changed:\n in %x\nout %x", in, out)
			}
		})
	}
}

// TestTruncatedFrames cuts well-formed frames at every length: short of a
// whole UDP header the program cannot tell the datagram is for a VIP and
// must pass it untouched (the kernel drops it); past that it is ours and
// malformed.
func TestTruncatedFrames(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	frames := map[string]frame{
		"IPv4":              q4(),
		"IPv6":              q6(),
		"802.1Q IPv4":       {vlans: []uint16{ether8021Q}, src: client4, dst: vip4, payload: query("example.com", nil)},
		"QinQ IPv6":         {vlans: []uint16{ether8021A, ether8021Q}, src: client6, dst: vip6, payload: query("example.com", nil)},
		"IPv4 with options": {ipOpts: []byte{1, 1, 1, 0, 1, 1, 1, 0}, src: client4, dst: vip4, payload: query("example.com", nil)},
	}
	for name, f := range frames {
		full := f.bytes()
		udpEnd := len(full) - len(f.payload)
		// BPF_PROG_TEST_RUN needs a whole Ethernet header.
		for n := 14; n < len(full); n++ {
			want, wantV := uint32(xdpPass), uncounted
			if n >= udpEnd {
				want, wantV = xdpDrop, vMalformed
			}
			ret, _, v := runFrame(t, o, full[:n])
			if ret != want || v != wantV {
				t.Errorf("%s cut to %d of %d bytes (UDP header ends at %d): got %s counted %s, want %s counted %s",
					name, n, len(full), udpEnd, actionNames[ret], verdictName(v), actionNames[want], verdictName(wantV))
			}
		}
		if ret, _, v := runFrame(t, o, full); ret != xdpPass || v != vPass {
			t.Errorf("%s whole: got %s counted %s", name, actionNames[ret], verdictName(v))
		}
	}
}

// longName returns a name of exactly n bytes in wire format (n >= 3).
func longName(n int) string {
	var b bytes.Buffer
	left := n - 1 // the root label
	for left > 0 {
		l := min(63, left-1)
		if left-1-l == 1 { // a one-byte remainder cannot be a label
			l--
		}
		b.WriteString(string(bytes.Repeat([]byte{'a'}, l)) + ".")
		left -= l + 1
	}
	return b.String()
}

// longLabels returns a wire-format name of n bytes (which may exceed the
// 255 that miekg/dns would pack).
func longLabels(n int) []byte {
	var b []byte
	for len(b) < n-1 {
		l := min(63, n-1-len(b)-1)
		b = append(b, byte(l))
		b = append(b, bytes.Repeat([]byte{'a'}, l)...)
	}
	return append(b, 0)
}

// rawQuery is a query header with QDCOUNT 1 followed by name, QTYPE A,
// QCLASS IN.
func rawQuery(name []byte) []byte {
	b := []byte{0x42, 0x42, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0}
	return append(append(b, name...), 0, 1, 0, 1)
}

func TestLongNameHelpers(t *testing.T) {
	for _, n := range []int{3, 64, 65, 66, 255} {
		name := longName(n)
		buf := make([]byte, 300)
		off, err := dns.PackDomainName(name, buf, 0, nil, false)
		if err != nil || off != n {
			t.Errorf("longName(%d): %d bytes, %v", n, off, err)
		}
	}
	if got := len(longLabels(256)); got != 256 {
		t.Errorf("longLabels(256) is %d bytes", got)
	}
}
