package dnswire

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/miekg/dns"
)

// forward runs a query through planECS and appendForward as the UDP path
// does and unpacks what would go to the backend.
func forward(t *testing.T, q []byte, pol ECSPolicy, client string) (*dns.Msg, []byte, *View) {
	t.Helper()
	v := new(View)
	if err := v.ParseQuery(q); err != nil {
		t.Fatal(err)
	}
	v.PlanECS(&pol, q, netip.MustParseAddr(client))
	out := AppendForward(nil, q, v)
	m := new(dns.Msg)
	if err := m.Unpack(out); err != nil {
		t.Fatalf("forwarded query does not unpack: %v\n% x", err, out)
	}
	return m, out, v
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
	add := ECSPolicy{Add: true, V4: 24, V6: 56}
	override := ECSPolicy{Add: true, Override: true, V4: 24, V6: 56}
	cases := []struct {
		name        string
		q           []byte
		pol         ECSPolicy
		client      string
		mode        ECSMode
		want        string // the subnet the backend gets; "" none
		payload     uint16 // the OPT's UDP size the backend sees
		cookie, do  bool
		unchanged   bool
		clientState ECSClient
	}{
		{name: "no OPT: one is added, advertising 512", q: dnstest.ECSQuery(t, 0, false, ""), pol: add, client: "192.0.2.77",
			mode: ECSAddOPT, want: "192.0.2.0/24", payload: 512},
		{name: "OPT without ECS: the option joins the others", q: dnstest.ECSQuery(t, 4096, true, ""), pol: add, client: "192.0.2.77",
			mode: ECSAddOption, want: "192.0.2.0/24", payload: 4096, cookie: true, do: true},
		{name: "IPv6 client cut to 56 bits", q: dnstest.ECSQuery(t, 1232, false, ""), pol: add, client: "2001:db8:1234:56ff:ffff::1",
			mode: ECSAddOption, want: "2001:db8:1234:5600::/56", payload: 1232, do: true},
		{name: "a prefix off a byte boundary zeroes the rest", q: dnstest.ECSQuery(t, 0, false, ""), pol: ECSPolicy{Add: true, V4: 20},
			client: "198.51.100.255", mode: ECSAddOPT, want: "198.51.96.0/20", payload: 512},
		{name: "prefix 0 sends the family alone", q: dnstest.ECSQuery(t, 0, false, ""), pol: ECSPolicy{Add: true, V4: 0},
			client: "203.0.113.9", mode: ECSAddOPT, want: "0.0.0.0/0", payload: 512},
		{name: "v4-mapped client counts as IPv4", q: dnstest.ECSQuery(t, 0, false, ""), pol: add, client: "::ffff:192.0.2.77",
			mode: ECSAddOPT, want: "192.0.2.0/24", payload: 512},
		{name: "client ECS kept without override", q: dnstest.ECSQuery(t, 4096, true, "203.0.113.0/24"), pol: add, client: "192.0.2.77",
			mode: ECSNone, want: "203.0.113.0/24", payload: 4096, cookie: true, do: true, unchanged: true, clientState: ECSClientKept},
		{name: "client ECS replaced with override, other options kept", q: dnstest.ECSQuery(t, 4096, true, "203.0.113.0/24"), pol: override,
			client: "192.0.2.77", mode: ECSReplace, want: "192.0.2.0/24", payload: 4096, cookie: true, do: true},
		{name: "override alone does not add", q: dnstest.ECSQuery(t, 0, false, ""), pol: ECSPolicy{Override: true, V4: 24},
			client: "192.0.2.77", mode: ECSNone, unchanged: true},
		{name: "no policy: untouched", q: dnstest.ECSQuery(t, 4096, true, ""), pol: ECSPolicy{}, client: "192.0.2.77",
			mode: ECSNone, payload: 4096, cookie: true, do: true, unchanged: true},
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
			s := dnstest.SubnetOf(t, m)
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

func TestECSAnswerIsCutBack(t *testing.T) {
	add := ECSPolicy{Add: true, V4: 24}
	cases := []struct {
		name      string
		q         []byte
		scope     int
		wantOPT   bool
		wantScope int
	}{
		{"added OPT is removed", dnstest.ECSQuery(t, 0, false, ""), 24, false, 24},
		{"added option is removed, the client's OPT stays", dnstest.ECSQuery(t, 4096, true, ""), 0, true, 0},
		{"replaced option is removed", dnstest.ECSQuery(t, 4096, false, "203.0.113.0/24"), 16, true, 16},
		{"answer without ECS", dnstest.ECSQuery(t, 4096, false, ""), -1, true, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pol := add
			pol.Override = true
			_, fwd, qv := forward(t, tc.q, pol, "192.0.2.77")
			resp := dnstest.ECSAnswer(t, fwd, tc.scope, tc.wantOPT)
			var v View
			if err := MatchResponse(resp, &v, tc.q[HeaderLen:qv.QEnd]); err != nil {
				t.Fatal(err)
			}
			n, scope, ok := StripECS(resp, &v, qv.ECS.Mode)
			if !ok || scope != tc.wantScope {
				t.Fatalf("scope %d ok %v, want %d", scope, ok, tc.wantScope)
			}
			m := new(dns.Msg)
			if err := m.Unpack(resp[:n]); err != nil {
				t.Fatalf("cut answer does not unpack: %v", err)
			}
			if len(m.Answer) != 1 || (m.IsEdns0() != nil) != tc.wantOPT || len(dnstest.SubnetOf(t, m)) != 0 {
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
			if !tc.wantOPT && TruncateTo(resp[:n], &v, HeaderLen+len(tc.q)-HeaderLen) == 0 {
				t.Fatal("cut answer cannot be truncated")
			}
		})
	}
}
