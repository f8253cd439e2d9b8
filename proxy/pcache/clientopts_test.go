package pcache

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"

	"github.com/miekg/dns"
)

func TestSipHash24Vector(t *testing.T) {
	// The reference vector of the SipHash paper (appendix A): key 00..0f,
	// message 00..0e.
	var msg [15]byte
	for i := range msg {
		msg[i] = byte(i)
	}
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	if got := siphash24(k0, k1, msg[:]); got != 0xa129ca6149be45e5 {
		t.Errorf("siphash24 = %#x, want 0xa129ca6149be45e5", got)
	}
}

// TestCacheStoresNoClientOptions: the first client's COOKIE, NSID, EXPIRE
// and padding are not replayed to the next one; EDE describes the answer
// and stays, and TTLs after the OPT still age.
func TestCacheStoresNoClientOptions(t *testing.T) {
	c := New(cacheCfg(100))
	q1 := dnstest.WithOpts(dnstest.Query("www.example.", dns.TypeA), dnstest.CookieOpt("0102030405060708"))
	raw1, v1 := keyed(t, q1)
	r := new(dns.Msg)
	r.SetReply(q1)
	rr, _ := dns.NewRR("www.example. 300 IN A 192.0.2.1")
	r.Answer = append(r.Answer, rr)
	opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 1232}}
	opt.Option = []dns.EDNS0{
		dnstest.CookieOpt("0102030405060708a1a2a3a4a5a6a7a8b1b2b3b4b5b6b7b8"),
		&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: hex.EncodeToString([]byte("ns1"))},
		&dns.EDNS0_EXPIRE{Code: dns.EDNS0EXPIRE, Expire: 1000},
		&dns.EDNS0_PADDING{Padding: make([]byte, 20)},
		&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeOther, ExtraText: "kept"},
	}
	glue, _ := dns.NewRR("ns.example. 300 IN A 192.0.2.53")
	r.Extra = []dns.RR{opt, glue} // a record after the OPT: its TTL moves
	c.Store(&v1.key, dnstest.Pack(t, r), 0)
	_ = raw1

	q2 := dnstest.WithOpts(dnstest.Query("www.example.", dns.TypeA))
	raw2, v2 := keyed(t, q2)
	now := int64(100 * time.Second)
	out, res, _ := c.Answer(nil, &v2.key, raw2, &v2.View, now, false)
	if res != Hit {
		t.Fatal("no hit")
	}
	out = WithCookie(out, 0, raw2, &v2.View, netip.MustParseAddr("192.0.2.7"), now)
	m := dnstest.Unpack(t, out)
	o := m.IsEdns0()
	if o == nil {
		t.Fatal("hit lost its OPT")
	}
	if len(o.Option) != 1 || o.Option[0].Option() != dns.EDNS0EDE {
		t.Errorf("hit carries options %v, want only the EDE", o.Option)
	}
	for _, rr := range append(m.Answer, m.Extra...) {
		if rr.Header().Rrtype == dns.TypeA && rr.Header().Ttl != 200 {
			t.Errorf("%s: TTL %d, want 200", rr.Header().Name, rr.Header().Ttl)
		}
	}
}

// TestCacheHitEchoesClientCookie: a hit answers the asking client's cookie
// with a server cookie of anyfront's own (RFC 9018 layout).
func TestCacheHitEchoesClientCookie(t *testing.T) {
	c := New(cacheCfg(100))
	q1 := dnstest.WithOpts(dnstest.Query("www.example.", dns.TypeA))
	_, v1 := keyed(t, q1)
	r := new(dns.Msg)
	r.SetReply(q1)
	rr, _ := dns.NewRR("www.example. 300 IN A 192.0.2.1")
	r.Answer = append(r.Answer, rr)
	r.SetEdns0(1232, false)
	now := int64(1_800_000_000) * int64(time.Second)
	c.Store(&v1.key, dnstest.Pack(t, r), now)

	client := netip.MustParseAddr("2001:db8::7")
	for _, cc := range []string{"a1a2a3a4a5a6a7a8", "b1b2b3b4b5b6b7b8" + "0100000000000000" + "0000000000000000"} {
		q2 := dnstest.WithOpts(dnstest.Query("www.example.", dns.TypeA), dnstest.CookieOpt(cc))
		raw2, v2 := keyed(t, q2)
		out, res, _ := c.Answer(make([]byte, 2, 512), &v2.key, raw2, &v2.View, now, false)
		if res != Hit {
			t.Fatal("a cookie changed the key: no hit")
		}
		out = WithCookie(out, 2, raw2, &v2.View, client, now)
		m := dnstest.Unpack(t, out[2:])
		var got *dns.EDNS0_COOKIE
		for _, o := range m.IsEdns0().Option {
			if x, ok := o.(*dns.EDNS0_COOKIE); ok {
				got = x
			}
		}
		if got == nil || len(got.Cookie) != 48 || got.Cookie[:16] != cc[:16] {
			t.Fatalf("cookie %v, want client cookie %s echoed with a 16-byte server cookie", got, cc[:16])
		}
		sc, _ := hex.DecodeString(got.Cookie[16:])
		if sc[0] != 1 || sc[1]|sc[2]|sc[3] != 0 || binary.BigEndian.Uint32(sc[4:]) != 1_800_000_000 {
			t.Errorf("server cookie %x: want version 1, reserved 0, timestamp 1800000000", sc)
		}
		ccb, _ := hex.DecodeString(cc[:16])
		a := client.As16()
		if h := hitCookies.hash(ccb, sc[:8], a[:]); binary.BigEndian.Uint64(sc[8:]) != h {
			t.Errorf("server cookie hash %x, want %x", sc[8:], h)
		}
	}
	t.Run("allocates nothing", func(t *testing.T) {
		q2 := dnstest.WithOpts(dnstest.Query("www.example.", dns.TypeA), dnstest.CookieOpt("a1a2a3a4a5a6a7a8"))
		raw2, v2 := keyed(t, q2)
		out := make([]byte, 0, 512)
		if n := testing.AllocsPerRun(1000, func() {
			v2.ParseQuery(raw2)
			v2.key.Set(&v2.View)
			out, _, _ = c.Answer(out[:0], &v2.key, raw2, &v2.View, now, false)
			out = WithCookie(out, 0, raw2, &v2.View, client, now)
		}); n != 0 {
			t.Errorf("%v allocations per hit with a cookie", n)
		}
	})
}

// TestCacheBypass: signed, malformed, NSID and EXPIRE queries are the
// backend's to answer.
func TestCacheBypass(t *testing.T) {
	tsig := func() *dns.Msg {
		q := dnstest.Query("conf.test.", dns.TypeSOA)
		q.Extra = append(q.Extra, &dns.TSIG{Hdr: dns.RR_Header{Name: "k.", Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
			Algorithm: dns.HmacSHA256, TimeSigned: uint64(time.Now().Unix()), Fudge: 300, MACSize: 32, MAC: hex.EncodeToString(make([]byte, 32)), OrigId: 1})
		return q
	}
	opt := func(name string) *dns.OPT {
		return &dns.OPT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeOPT, Class: 1232}}
	}
	for _, tt := range []struct {
		name string
		q    func() *dns.Msg
		skip bool
	}{
		{"plain query is cached", func() *dns.Msg { return dnstest.Query("conf.test.", dns.TypeSOA) }, false},
		{"a cookie is cached", func() *dns.Msg {
			return dnstest.WithOpts(dnstest.Query("conf.test.", dns.TypeSOA), dnstest.CookieOpt("0102030405060708"))
		}, false},
		{"TSIG-signed", tsig, true},
		{"NSID", func() *dns.Msg {
			return dnstest.WithOpts(dnstest.Query("conf.test.", dns.TypeSOA), &dns.EDNS0_NSID{Code: dns.EDNS0NSID})
		}, true},
		{"EXPIRE", func() *dns.Msg {
			return dnstest.WithOpts(dnstest.Query("conf.test.", dns.TypeSOA), &dns.EDNS0_EXPIRE{Code: dns.EDNS0EXPIRE, Empty: true})
		}, true},
		{"cookie of a bad length", func() *dns.Msg {
			return dnstest.WithOpts(dnstest.Query("conf.test.", dns.TypeSOA), dnstest.CookieOpt("01020304"))
		}, true},
		{"OPT not owned by the root", func() *dns.Msg {
			q := dnstest.Query("conf.test.", dns.TypeSOA)
			q.Extra = append(q.Extra, opt("x."))
			return q
		}, true},
		{"two OPTs", func() *dns.Msg {
			q := dnstest.Query("conf.test.", dns.TypeSOA)
			q.Extra = append(q.Extra, opt("."), opt("."))
			return q
		}, true},
		{"a record in the answer section", func() *dns.Msg {
			q := dnstest.Query("conf.test.", dns.TypeSOA)
			rr, _ := dns.NewRR("conf.test. 60 IN A 192.0.2.1")
			q.Answer = append(q.Answer, rr)
			return q
		}, true},
		{"TC set", func() *dns.Msg {
			q := dnstest.Query("conf.test.", dns.TypeSOA)
			q.Truncated = true
			return q
		}, true},
		{"OPT in the authority section", func() *dns.Msg {
			q := dnstest.Query("conf.test.", dns.TypeSOA)
			q.Ns = append(q.Ns, opt("."))
			return q
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, v := keyed(t, tt.q())
			if v.key.skip != tt.skip {
				t.Errorf("skip = %v, want %v", v.key.skip, tt.skip)
			}
		})
	}
}

// TestParseQueryRFC8906: the opcode is judged before QDCOUNT; TC=1 is the
// backend's to judge; FORMERR echoes the question; FORMERR and NOTIMP carry
// no RA.
func TestParseQueryRFC8906(t *testing.T) {
	hdrOnly := make([]byte, dnswire.HeaderLen)
	binary.BigEndian.PutUint16(hdrOnly[2:], 15<<11) // opcode 15, nothing else
	var v dnswire.View
	if err := v.ParseQuery(hdrOnly); err != dnswire.ErrOpcode {
		t.Errorf("header-only opcode 15: %v, want %v", err, dnswire.ErrOpcode)
	}
	if r := dnswire.AppendReply(nil, hdrOnly, &v, dnswire.RcodeNotImp); binary.BigEndian.Uint16(r[2:])&dnswire.FlagRA != 0 {
		t.Error("NOTIMP sets RA")
	}
	tc := dnstest.Query("www.example.", dns.TypeA)
	tc.Truncated = true
	raw := dnstest.Pack(t, tc)
	if err := v.ParseQuery(raw); err != nil || !v.Malformed {
		t.Fatalf("TC query: %v, malformed %v; want it parsed and kept from the cache", err, v.Malformed)
	}
	m := dnstest.Unpack(t, dnswire.AppendReply(nil, raw, &v, dnswire.RcodeFormErr))
	if m.Rcode != dns.RcodeFormatError || m.RecursionAvailable || len(m.Question) != 1 || m.Question[0].Name != "www.example." {
		t.Errorf("FORMERR: %v; want FORMERR, no RA, the question echoed", m)
	}
}
