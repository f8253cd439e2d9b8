package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/miekg/dns"
)

// ecsQuery builds a query with optional EDNS (udp > 0), DO, a cookie and a
// client subnet.
func ecsQuery(t testing.TB, udp uint16, cookie bool, subnet string) []byte {
	t.Helper()
	m := query("www.Example.com.", dns.TypeA)
	if udp > 0 {
		m.SetEdns0(udp, true)
		o := m.IsEdns0()
		if cookie {
			o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}
		if subnet != "" {
			p := netip.MustParsePrefix(subnet)
			fam := uint16(1)
			if p.Addr().Is6() {
				fam = 2
			}
			o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: fam,
				SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())})
		}
	}
	return pack(t, m)
}

// forward runs a query through planECS and appendForward as the UDP path
// does and unpacks what would go to the backend.
func forward(t *testing.T, q []byte, pol dnswire.ECSPolicy, client string) (*dns.Msg, []byte, *msgView) {
	t.Helper()
	v := new(msgView)
	if err := v.ParseQuery(q); err != nil {
		t.Fatal(err)
	}
	v.PlanECS(&pol, q, netip.MustParseAddr(client))
	out := dnswire.AppendForward(nil, q, &v.View)
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("forwarded query does not unpack: %v\n% x", err, out)
	}
	return m, out, v
}

func subnetOf(t *testing.T, m *dns.Msg) []*dns.EDNS0_SUBNET {
	t.Helper()
	var s []*dns.EDNS0_SUBNET
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				s = append(s, e)
			}
		}
	}
	return s
}

func hasCookie(m *dns.Msg) bool {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if _, ok := opt.(*dns.EDNS0_COOKIE); ok {
				return true
			}
		}
	}
	return false
}

func TestECSQueryEdits(t *testing.T) {
	add := dnswire.ECSPolicy{Add: true, V4: 24, V6: 56}
	override := dnswire.ECSPolicy{Add: true, Override: true, V4: 24, V6: 56}
	cases := []struct {
		name        string
		q           []byte
		pol         dnswire.ECSPolicy
		client      string
		mode        dnswire.ECSMode
		want        string // the subnet the backend gets; "" none
		payload     uint16 // the OPT's UDP size the backend sees
		cookie, do  bool
		unchanged   bool
		clientState dnswire.ECSClient
	}{
		{name: "no OPT: one is added, advertising 512", q: ecsQuery(t, 0, false, ""), pol: add, client: "192.0.2.77",
			mode: dnswire.ECSAddOPT, want: "192.0.2.0/24", payload: 512},
		{name: "OPT without ECS: the option joins the others", q: ecsQuery(t, 4096, true, ""), pol: add, client: "192.0.2.77",
			mode: dnswire.ECSAddOption, want: "192.0.2.0/24", payload: 4096, cookie: true, do: true},
		{name: "IPv6 client cut to 56 bits", q: ecsQuery(t, 1232, false, ""), pol: add, client: "2001:db8:1234:56ff:ffff::1",
			mode: dnswire.ECSAddOption, want: "2001:db8:1234:5600::/56", payload: 1232, do: true},
		{name: "a prefix off a byte boundary zeroes the rest", q: ecsQuery(t, 0, false, ""), pol: dnswire.ECSPolicy{Add: true, V4: 20},
			client: "198.51.100.255", mode: dnswire.ECSAddOPT, want: "198.51.96.0/20", payload: 512},
		{name: "prefix 0 sends the family alone", q: ecsQuery(t, 0, false, ""), pol: dnswire.ECSPolicy{Add: true, V4: 0},
			client: "203.0.113.9", mode: dnswire.ECSAddOPT, want: "0.0.0.0/0", payload: 512},
		{name: "v4-mapped client counts as IPv4", q: ecsQuery(t, 0, false, ""), pol: add, client: "::ffff:192.0.2.77",
			mode: dnswire.ECSAddOPT, want: "192.0.2.0/24", payload: 512},
		{name: "client ECS kept without override", q: ecsQuery(t, 4096, true, "203.0.113.0/24"), pol: add, client: "192.0.2.77",
			mode: dnswire.ECSNone, want: "203.0.113.0/24", payload: 4096, cookie: true, do: true, unchanged: true, clientState: dnswire.ECSClientKept},
		{name: "client ECS replaced with override, other options kept", q: ecsQuery(t, 4096, true, "203.0.113.0/24"), pol: override,
			client: "192.0.2.77", mode: dnswire.ECSReplace, want: "192.0.2.0/24", payload: 4096, cookie: true, do: true},
		{name: "override alone does not add", q: ecsQuery(t, 0, false, ""), pol: dnswire.ECSPolicy{Override: true, V4: 24},
			client: "192.0.2.77", mode: dnswire.ECSNone, unchanged: true},
		{name: "no policy: untouched", q: ecsQuery(t, 4096, true, ""), pol: dnswire.ECSPolicy{}, client: "192.0.2.77",
			mode: dnswire.ECSNone, payload: 4096, cookie: true, do: true, unchanged: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, out, v := forward(t, tc.q, tc.pol, tc.client)
			if v.ECS.Mode != tc.mode || v.ECS.Client != tc.clientState {
				t.Fatalf("mode %d client %d, want %d %d", v.ECS.Mode, v.ECS.Client, tc.mode, tc.clientState)
			}
			if tc.unchanged != bytes.Equal(out, tc.q) {
				t.Fatalf("forwarded bytes changed: %v, want changed: %v", !tc.unchanged, !tc.unchanged)
			}
			if m.Question[0].Name != "www.Example.com." || m.Id != 0x1234 {
				t.Fatalf("question or ID changed: %v", m)
			}
			s := subnetOf(t, m)
			switch {
			case tc.want == "" && len(s) != 0:
				t.Fatalf("backend gets ECS %v, want none", s)
			case tc.want != "" && len(s) != 1:
				t.Fatalf("backend gets %d ECS options, want 1", len(s))
			case tc.want != "":
				a, _ := netip.AddrFromSlice(s[0].Address)
				got := netip.PrefixFrom(a.Unmap(), int(s[0].SourceNetmask))
				if got.String() != tc.want || s[0].SourceScope != 0 {
					t.Fatalf("backend gets ECS %s scope %d, want %s scope 0", got, s[0].SourceScope, tc.want)
				}
			}
			if o := m.IsEdns0(); tc.payload != 0 && (o == nil || o.UDPSize() != tc.payload || o.Do() != tc.do) {
				t.Fatalf("OPT %v, want payload %d DO %v", o, tc.payload, tc.do)
			}
			if hasCookie(m) != tc.cookie {
				t.Fatalf("cookie present %v, want %v", hasCookie(m), tc.cookie)
			}
		})
	}
}

func TestECSMalformedOPTPassesUntouchedAndUncached(t *testing.T) {
	good := ecsQuery(t, 4096, true, "")
	v := new(msgView)
	if err := v.ParseQuery(good); err != nil {
		t.Fatal(err)
	}
	optRD := v.OPTOff + 11 // the cookie option starts the RDATA
	overrun := bytes.Clone(good)
	overrun[optRD+3] = 200 // cookie length past the record
	twice := ecsQuery(t, 4096, false, "192.0.2.0/24")
	if err := v.ParseQuery(twice); err != nil {
		t.Fatal(err)
	}
	opt := twice[v.OPTOff+11:]
	twice = append(twice, opt...) // a second ECS option
	binRD := v.OPTOff + 9
	twice[binRD+1] += byte(len(opt))
	sm := query("www.example.com.", dns.TypeA)
	sm.SetEdns0(4096, false)
	// Two bytes of ECS: no room for the family and both prefix lengths.
	sm.IsEdns0().Option = append(sm.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1}})
	shortECS := pack(t, sm)
	withOverride := dnswire.ECSPolicy{Add: true, Override: true, V4: 24}
	for name, tc := range map[string]struct {
		q   []byte
		pol dnswire.ECSPolicy
	}{
		"option overruns the OPT": {overrun, withOverride},
		"ECS twice":               {twice, withOverride},
		// With override it is replaced like any other client ECS.
		"ECS too short, kept": {shortECS, dnswire.ECSPolicy{Add: true, V4: 24}},
	} {
		q := tc.q
		t.Run(name, func(t *testing.T) {
			if err := v.ParseQuery(q); err != nil {
				t.Fatal(err)
			}
			if !v.HasOPT {
				t.Fatal("test query lost its OPT")
			}
			v.PlanECS(&tc.pol, q, netip.MustParseAddr("192.0.2.1"))
			out := dnswire.AppendForward(nil, q, &v.View)
			if !bytes.Equal(out, q) {
				t.Fatal("a malformed query was edited; the backend should judge it as sent")
			}
			v.key.set(v)
			if !v.key.skip {
				t.Fatal("a malformed ECS query may be cached")
			}
		})
	}
}

// ecsAnswer is a backend's answer to q carrying ECS with scope (negative:
// no ECS) and a cookie.
func ecsAnswer(t *testing.T, q []byte, scope int, cookie bool) []byte {
	t.Helper()
	qm := new(dns.Msg)
	if err := qm.Unpack(q); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg).SetReply(qm)
	m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: qm.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
		A: net.IP{192, 0, 2, 10}})
	m.SetEdns0(1232, false)
	o := m.IsEdns0()
	if cookie {
		o.Option = append(o.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	}
	if scope >= 0 {
		s := subnetOf(t, qm)[0]
		o.Option = append(o.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: s.Family,
			SourceNetmask: s.SourceNetmask, SourceScope: uint8(scope), Address: s.Address})
	}
	return pack(t, m)
}

func TestECSAnswerIsCutBack(t *testing.T) {
	add := dnswire.ECSPolicy{Add: true, V4: 24}
	cases := []struct {
		name      string
		q         []byte
		scope     int
		wantOPT   bool
		wantScope int
	}{
		{"added OPT is removed", ecsQuery(t, 0, false, ""), 24, false, 24},
		{"added option is removed, the client's OPT stays", ecsQuery(t, 4096, true, ""), 0, true, 0},
		{"replaced option is removed", ecsQuery(t, 4096, false, "203.0.113.0/24"), 16, true, 16},
		{"answer without ECS", ecsQuery(t, 4096, false, ""), -1, true, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := add
			pol.Override = true
			_, fwd, qv := forward(t, tc.q, pol, "192.0.2.77")
			resp := ecsAnswer(t, fwd, tc.scope, tc.wantOPT)
			var v msgView
			if err := dnswire.MatchResponse(resp, &v.View, tc.q[dnswire.HeaderLen:qv.QEnd]); err != nil {
				t.Fatal(err)
			}
			n, scope, ok := dnswire.StripECS(resp, &v.View, qv.ECS.Mode)
			if !ok || scope != tc.wantScope {
				t.Fatalf("scope %d ok %v, want %d", scope, ok, tc.wantScope)
			}
			m := new(dns.Msg)
			if err := m.Unpack(resp[:n]); err != nil {
				t.Fatalf("cut answer does not unpack: %v", err)
			}
			if len(m.Answer) != 1 || (m.IsEdns0() != nil) != tc.wantOPT || len(subnetOf(t, m)) != 0 {
				t.Fatalf("cut answer %v: want the A record, OPT %v, no ECS", m, tc.wantOPT)
			}
			if tc.wantOPT && !hasCookie(m) {
				t.Fatal("the backend's other options were lost")
			}
			if int(v.ARCount) != len(m.Extra) {
				t.Fatalf("view's ARCOUNT %d out of step with the message", v.ARCount)
			}
			// A client without EDNS gets an answer that fits 512 bytes:
			// truncateTo works on the cut answer.
			if !tc.wantOPT && dnswire.TruncateTo(resp[:n], &v.View, dnswire.HeaderLen+len(tc.q)-dnswire.HeaderLen) == 0 {
				t.Fatal("cut answer cannot be truncated")
			}
		})
	}
}

func TestECSCacheKeys(t *testing.T) {
	pol := dnswire.ECSPolicy{Add: true, V4: 24, V6: 56}
	key := func(q []byte, client string) cacheKey {
		var v msgView
		if err := v.ParseQuery(q); err != nil {
			t.Fatal(err)
		}
		v.PlanECS(&pol, q, netip.MustParseAddr(client))
		v.key.set(&v)
		return v.key
	}
	plain := ecsQuery(t, 0, false, "")
	a, b, c := key(plain, "192.0.2.1"), key(plain, "192.0.2.200"), key(plain, "198.51.100.1")
	if !bytes.Equal(a.bytes(), b.bytes()) {
		t.Error("clients in one /24 get different keys")
	}
	if bytes.Equal(a.bytes(), c.bytes()) {
		t.Error("clients in different /24s share a key")
	}
	if !a.shared || string(a.buf[:a.base]) != string(c.buf[:c.base]) || a.hb != c.hb {
		t.Error("owned-ECS keys must share one base key for scope-0 answers")
	}
	if a.buf[a.n-1] == 0 {
		t.Error("an ECS key ends in 0, which XDP's answer cache takes for EDNS version 0")
	}
	kept := key(ecsQuery(t, 4096, false, "203.0.113.0/24"), "192.0.2.1")
	other := key(ecsQuery(t, 4096, false, "203.0.114.0/24"), "192.0.2.1")
	if kept.shared || bytes.Equal(kept.bytes(), other.bytes()) {
		t.Error("a client's own ECS must key its answer alone")
	}
	none := key(ecsQuery(t, 4096, false, ""), "192.0.2.1")
	pol = dnswire.ECSPolicy{}
	unpooled := key(ecsQuery(t, 4096, false, ""), "192.0.2.1")
	if !bytes.Equal(none.buf[:none.base], unpooled.bytes()) {
		t.Error("the base key differs from the key without ECS")
	}
}

func TestECSCacheHonoursScope(t *testing.T) {
	pol := dnswire.ECSPolicy{Add: true, V4: 24}
	c := newPacketCache(cacheCfg(1000))
	q := ecsQuery(t, 0, false, "")
	// roundTrip asks the cache as client would, and on a miss stores the
	// backend's answer with scope, as handleAnswer does.
	roundTrip := func(client string, scope int) bool {
		var v msgView
		if err := v.ParseQuery(q); err != nil {
			t.Fatal(err)
		}
		v.PlanECS(&pol, q, netip.MustParseAddr(client))
		v.key.set(&v)
		if _, res, _ := c.answer(nil, &v.key, q, &v, 0, false); res == cacheHit {
			return true
		}
		fwd := dnswire.AppendForward(nil, q, &v.View)
		resp := ecsAnswer(t, fwd, scope, false)
		var rv msgView
		if err := dnswire.MatchResponse(resp, &rv.View, q[dnswire.HeaderLen:v.QEnd]); err != nil {
			t.Fatal(err)
		}
		n, sc, ok := dnswire.StripECS(resp, &rv.View, v.ECS.Mode)
		v.key.scoped(v.ECS.Source(), sc, ok)
		c.store(&v.key, resp[:n], 0)
		return false
	}
	if roundTrip("192.0.2.1", 24) || !roundTrip("192.0.2.99", 24) {
		t.Fatal("a scope-24 answer must serve its own /24")
	}
	if roundTrip("198.51.100.1", 24) {
		t.Fatal("a scope-24 answer served another /24")
	}
	c = newPacketCache(cacheCfg(1000))
	if roundTrip("192.0.2.1", 0) || !roundTrip("203.0.113.1", 24) {
		t.Fatal("a scope-0 answer must serve every subnet")
	}
	c = newPacketCache(cacheCfg(1000))
	if roundTrip("192.0.2.1", 25) || roundTrip("192.0.2.1", 25) {
		t.Fatal("an answer scoped narrower than the source prefix was cached")
	}
}
