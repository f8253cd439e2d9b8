package pcache

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

func TestECSMalformedOPTPassesUntouchedAndUncached(t *testing.T) {
	good := dnstest.ECSQuery(t, 4096, true, "")
	v := new(qview)
	if err := v.ParseQuery(good); err != nil {
		t.Fatal(err)
	}
	optRD := v.OPTOff + 11 // the cookie option starts the RDATA
	overrun := bytes.Clone(good)
	overrun[optRD+3] = 200 // cookie length past the record
	twice := dnstest.ECSQuery(t, 4096, false, "192.0.2.0/24")
	if err := v.ParseQuery(twice); err != nil {
		t.Fatal(err)
	}
	opt := twice[v.OPTOff+11:]
	twice = append(twice, opt...) // a second ECS option
	binRD := v.OPTOff + 9
	twice[binRD+1] += byte(len(opt))
	sm := dnstest.Query("www.example.com.", dns.TypeA)
	sm.SetEdns0(4096, false)
	// Two bytes of ECS: no room for the family and both prefix lengths.
	sm.IsEdns0().Option = append(sm.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: dns.EDNS0SUBNET, Data: []byte{0, 1}})
	shortECS := dnstest.Pack(t, sm)
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
			v.key.Set(&v.View)
			if !v.key.skip {
				t.Fatal("a malformed ECS query may be cached")
			}
		})
	}
}

func TestECSCacheKeys(t *testing.T) {
	pol := dnswire.ECSPolicy{Add: true, V4: 24, V6: 56}
	key := func(q []byte, client string) Key {
		var v qview
		if err := v.ParseQuery(q); err != nil {
			t.Fatal(err)
		}
		v.PlanECS(&pol, q, netip.MustParseAddr(client))
		v.key.Set(&v.View)
		return v.key
	}
	plain := dnstest.ECSQuery(t, 0, false, "")
	a, b, c := key(plain, "192.0.2.1"), key(plain, "192.0.2.200"), key(plain, "198.51.100.1")
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("clients in one /24 get different keys")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Error("clients in different /24s share a key")
	}
	if !a.shared || string(a.buf[:a.base]) != string(c.buf[:c.base]) || a.hb != c.hb {
		t.Error("owned-ECS keys must share one base key for scope-0 answers")
	}
	if a.buf[a.n-1] == 0 {
		t.Error("an ECS key ends in 0, which XDP's answer cache takes for EDNS version 0")
	}
	kept := key(dnstest.ECSQuery(t, 4096, false, "203.0.113.0/24"), "192.0.2.1")
	other := key(dnstest.ECSQuery(t, 4096, false, "203.0.114.0/24"), "192.0.2.1")
	if kept.shared || bytes.Equal(kept.Bytes(), other.Bytes()) {
		t.Error("a client's own ECS must key its answer alone")
	}
	none := key(dnstest.ECSQuery(t, 4096, false, ""), "192.0.2.1")
	pol = dnswire.ECSPolicy{}
	unpooled := key(dnstest.ECSQuery(t, 4096, false, ""), "192.0.2.1")
	if !bytes.Equal(none.buf[:none.base], unpooled.Bytes()) {
		t.Error("the base key differs from the key without ECS")
	}
}

func TestECSCacheHonoursScope(t *testing.T) {
	pol := dnswire.ECSPolicy{Add: true, V4: 24}
	c := New(cacheCfg(1000))
	q := dnstest.ECSQuery(t, 0, false, "")
	// roundTrip asks the cache as client would, and on a miss stores the
	// backend's answer with scope, as handleAnswer does.
	roundTrip := func(client string, scope int) bool {
		var v qview
		if err := v.ParseQuery(q); err != nil {
			t.Fatal(err)
		}
		v.PlanECS(&pol, q, netip.MustParseAddr(client))
		v.key.Set(&v.View)
		if _, res, _ := c.Answer(nil, &v.key, q, &v.View, 0, false); res == Hit {
			return true
		}
		fwd := dnswire.AppendForward(nil, q, &v.View)
		resp := dnstest.ECSAnswer(t, fwd, scope, false)
		var rv dnswire.View
		if err := dnswire.MatchResponse(resp, &rv, q[dnswire.HeaderLen:v.QEnd]); err != nil {
			t.Fatal(err)
		}
		n, sc, ok := dnswire.StripECS(resp, &rv, v.ECS.Mode)
		v.key.Scoped(v.ECS.Source(), sc, ok)
		c.Store(&v.key, resp[:n], 0)
		return false
	}
	if roundTrip("192.0.2.1", 24) || !roundTrip("192.0.2.99", 24) {
		t.Fatal("a scope-24 answer must serve its own /24")
	}
	if roundTrip("198.51.100.1", 24) {
		t.Fatal("a scope-24 answer served another /24")
	}
	c = New(cacheCfg(1000))
	if roundTrip("192.0.2.1", 0) || !roundTrip("203.0.113.1", 24) {
		t.Fatal("a scope-0 answer must serve every subnet")
	}
	c = New(cacheCfg(1000))
	if roundTrip("192.0.2.1", 25) || roundTrip("192.0.2.1", 25) {
		t.Fatal("an answer scoped narrower than the source prefix was cached")
	}
}
