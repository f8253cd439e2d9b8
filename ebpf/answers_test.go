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

// publish writes answers and the ACL to loaded objects, as SyncAnswers
// and SetACL do.
func publish(t testing.TB, o *objects, acl []netip.Prefix, answers ...Answer) {
	t.Helper()
	set, err := buildAnswers(answers)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.syncAnswers(set); err != nil {
		t.Fatal(err)
	}
	a, err := buildACL(acl)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.syncACL(a); err != nil {
		t.Fatal(err)
	}
}

// checkServed runs f and fails unless the program answered it with a,
// byte for byte as expectedFrame/expectedDNS build it, and counted it
// answered.
func checkServed(t *testing.T, o *objects, f frame, a Answer) []byte {
	t.Helper()
	out := expect(t, o, "cached query", f, xdpTX, vAnswered)
	want := expectedFrame(f, expectedDNS(f.payload, questionEnd(t, f.payload), a))
	if !bytes.Equal(out, want) {
		t.Fatalf("the answer differs from the reference:\n got %x\nwant %x", out, want)
	}
	checkChecksums(t, f, out)
	var m dns.Msg
	if err := m.Unpack(out[len(out)-udpPayloadLen(out, f):]); err != nil {
		t.Fatalf("the answer does not parse: %v", err)
	}
	return out
}

// udpPayloadLen reads the UDP length of the reply to f and returns the
// length of its payload.
func udpPayloadLen(out []byte, f frame) int {
	l3 := 14 + 4*len(f.vlans)
	ipl := 20
	if f.dst.Addr().Is6() {
		ipl = 40
	}
	return int(binary.BigEndian.Uint16(out[l3+ipl+4:])) - 8
}

// checkChecksums verifies the IPv4 header checksum and the UDP checksum of
// a reply to f as a receiver would: summing with the checksum in place.
func checkChecksums(t *testing.T, f frame, out []byte) {
	t.Helper()
	l3 := 14 + 4*len(f.vlans)
	var src, dst netip.Addr
	var udp []byte
	if f.dst.Addr().Is4() {
		ip := out[l3 : l3+20]
		if csumFold(csumAdd(0, ip)) != 0xffff {
			t.Errorf("IPv4 header checksum does not verify: %x", ip)
		}
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		udp = out[l3+20:]
	} else {
		ip := out[l3 : l3+40]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		udp = out[l3+40:]
	}
	sum := csumAdd(0, src.AsSlice())
	sum = csumAdd(sum, dst.AsSlice())
	sum += protoUDP + uint32(len(udp))
	if csumFold(csumAdd(sum, udp)) != 0xffff {
		t.Errorf("UDP checksum does not verify")
	}
}

// answerShapes are the entries the byte-for-byte tests publish, each with
// the query that hits it.
func answerShapes(t testing.TB, expires int64) []struct {
	name  string
	a     Answer
	query []byte
} {
	soa := rrSOA("example.com.", 300)
	return []struct {
		name  string
		a     Answer
		query []byte
	}{
		{"A", answerFrom(t, response("a.example.com.", dns.TypeA, 0, false, false,
			[]dns.RR{rrA("a.example.com.", 299, "192.0.2.1"), rrA("a.example.com.", 299, "192.0.2.2")}, nil), expires),
			plainQuery("a.example.com.", dns.TypeA, nil)},
		{"AAAA", answerFrom(t, response("a.example.com.", dns.TypeAAAA, 0, false, false,
			[]dns.RR{rrAAAA("a.example.com.", 120, "2001:db8::1")}, nil), expires),
			plainQuery("a.example.com.", dns.TypeAAAA, nil)},
		{"CNAME chain", answerFrom(t, response("www.example.com.", dns.TypeA, 0, false, false, []dns.RR{
			rrCNAME("www.example.com.", 60, "cdn.example.net."), rrCNAME("cdn.example.net.", 60, "edge.example.org."),
			rrA("edge.example.org.", 20, "198.51.100.80")}, nil), expires),
			plainQuery("www.example.com.", dns.TypeA, nil)},
		{"NXDOMAIN with SOA", answerFrom(t, response("nope.example.com.", dns.TypeA, dns.RcodeNameError, false, false,
			nil, []dns.RR{soa}), expires),
			plainQuery("nope.example.com.", dns.TypeA, nil)},
		{"EDNS with DO", answerFrom(t, response("a.example.com.", dns.TypeA, 0, true, true,
			[]dns.RR{rrA("a.example.com.", 299, "192.0.2.1")}, nil), expires),
			plainQuery("a.example.com.", dns.TypeA, withEDNS(1232, true))},
		{"mixed-case qname", answerFrom(t, response("mixed.example.com.", dns.TypeA, 0, true, false,
			[]dns.RR{rrA("mixed.example.com.", 30, "192.0.2.3")}, nil), expires),
			plainQuery("MiXeD.ExAmPlE.cOm.", dns.TypeA, withEDNS(4096, false))},
		{"CD set, no RD", answerFrom(t, func() *dns.Msg {
			m := response("cd.example.com.", dns.TypeA, 0, false, false, []dns.RR{rrA("cd.example.com.", 30, "192.0.2.4")}, nil)
			m.CheckingDisabled = true
			return m
		}(), expires),
			plainQuery("cd.example.com.", dns.TypeA, func(m *dns.Msg) { m.CheckingDisabled, m.RecursionDesired = true, false })},
	}
}

func TestAnswersByteForByte(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	shapes := answerShapes(t, monoNow(t)+int64(time.Hour))
	var all []Answer
	for _, s := range shapes {
		all = append(all, s.a)
	}
	publish(t, o, aclAll, all...)
	for _, s := range shapes {
		for _, fam := range []struct {
			name string
			f    frame
		}{
			{"IPv4", frame{src: client4, dst: vip4}},
			{"IPv6", frame{src: client6, dst: vip6}},
			{"802.1Q IPv4", frame{vlans: []uint16{ether8021Q}, src: client4b, dst: vip4}},
			{"QinQ IPv6", frame{vlans: []uint16{ether8021A, ether8021Q}, src: client6b, dst: vip6}},
			{"IPv4 with Ethernet padding", frame{src: client4, dst: vip4, pad: 20}},
		} {
			t.Run(s.name+"/"+fam.name, func(t *testing.T) {
				f := fam.f
				f.payload = s.query
				checkServed(t, o, f, s.a)
			})
		}
	}
	hits, err := o.answerHits()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shapes {
		if n := hits[s.a.Key]; n != 5 {
			t.Errorf("%v: %d hits counted, want 5", s.a.Key, n)
		}
	}
}

// TestAnswersPass: every query the cache must not answer passes to the
// proxy untouched and is counted pass.
func TestAnswersPass(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	now := monoNow(t)
	fresh := answerFrom(t, response("a.example.com.", dns.TypeA, 0, false, false,
		[]dns.RR{rrA("a.example.com.", 299, "192.0.2.1")}, nil), now+int64(time.Hour))
	ednsFresh := answerFrom(t, response("a.example.com.", dns.TypeA, 0, true, false,
		[]dns.RR{rrA("a.example.com.", 299, "192.0.2.1")}, nil), now+int64(time.Hour))
	expired := answerFrom(t, response("old.example.com.", dns.TypeA, 0, false, false,
		[]dns.RR{rrA("old.example.com.", 1, "192.0.2.1")}, nil), now-1)
	var big []dns.RR
	// 17 AAAA records (28 bytes each, the owner compressed) and an A
	// (16): 492 bytes, over 512 with the question, under MaxAnswerSections
	// with an OPT record too.
	for i := range 17 {
		big = append(big, rrAAAA("big.example.com.", 60, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}).String()))
	}
	big = append(big, rrA("big.example.com.", 60, "192.0.2.1"))
	bigNoEDNS := answerFrom(t, response("big.example.com.", dns.TypeAAAA, 0, false, false, big, nil), now+int64(time.Hour))
	bigEDNS := answerFrom(t, response("big.example.com.", dns.TypeAAAA, 0, true, false, big, nil), now+int64(time.Hour))
	if len(bigNoEDNS.Sections) <= 512-12-21 || len(bigNoEDNS.Sections) > MaxAnswerSections {
		t.Fatalf("the big answer has %d bytes of sections", len(bigNoEDNS.Sections))
	}
	publish(t, o, aclAll, fresh, ednsFresh, expired, bigNoEDNS, bigEDNS)

	q := func(payload []byte) frame { return frame{src: client4, dst: vip4, payload: payload} }
	cookie := func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
	}
	// The hits first, so that the misses below are misses for their one
	// difference only.
	checkServed(t, o, q(plainQuery("a.example.com.", dns.TypeA, nil)), fresh)
	checkServed(t, o, q(plainQuery("a.example.com.", dns.TypeA, withEDNS(512, false))), ednsFresh)
	checkServed(t, o, q(plainQuery("big.example.com.", dns.TypeAAAA, withEDNS(1232, false))), bigEDNS)

	for _, c := range []struct {
		name string
		f    frame
	}{
		{"a name not published", q(plainQuery("b.example.com.", dns.TypeA, nil))},
		{"a type not published", q(plainQuery("a.example.com.", dns.TypeMX, nil))},
		{"another class", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }))},
		{"DO when only a non-DO answer is published", q(plainQuery("a.example.com.", dns.TypeA, withEDNS(1232, true)))},
		{"CD when only a non-CD answer is published", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.CheckingDisabled = true }))},
		{"an expired answer", q(plainQuery("old.example.com.", dns.TypeA, nil))},
		{"a source outside the ACL", frame{src: client4c, dst: vip4, payload: plainQuery("a.example.com.", dns.TypeA, nil)}},
		{"an IPv6 source outside the ACL", frame{src: client6c, dst: vip6, payload: plainQuery("a.example.com.", dns.TypeA, nil)}},
		{"EDNS with a cookie option", q(plainQuery("a.example.com.", dns.TypeA, cookie))},
		{"EDNS version 1", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }))},
		{"an extended RCODE in the query's OPT", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false); m.Rcode = dns.RcodeBadVers }))},
		{"too big without EDNS", q(plainQuery("big.example.com.", dns.TypeAAAA, nil))},
		{"too big for an EDNS payload of 512", q(plainQuery("big.example.com.", dns.TypeAAAA, withEDNS(512, false)))},
		{"too big for an EDNS payload under 512 (512 applies)", q(plainQuery("big.example.com.", dns.TypeAAAA, withEDNS(100, false)))},
		{"an answer record in the query", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.Answer = []dns.RR{rrA("a.example.com.", 1, "192.0.2.9")} }))},
		{"an authority record in the query", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.Ns = []dns.RR{rrA("a.example.com.", 1, "192.0.2.9")} }))},
		{"an additional record that is not OPT", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.Extra = []dns.RR{rrA("a.example.com.", 1, "192.0.2.9")} }))},
		{"two OPT records", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false); m.Extra = append(m.Extra, m.Extra[0]) }))},
		{"bytes after the question", q(append(plainQuery("a.example.com.", dns.TypeA, nil), 0))},
		{"bytes after the OPT record", q(append(plainQuery("a.example.com.", dns.TypeA, withEDNS(1232, false)), 0))},
		{"opcode NOTIFY", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }))},
		{"TC=1 (the proxy forwards it uncached)", q(plainQuery("a.example.com.", dns.TypeA, func(m *dns.Msg) { m.Truncated = true }))},
		{"IPv4 options", frame{src: client4, dst: vip4, ipOpts: []byte{1, 1, 1, 0}, payload: plainQuery("a.example.com.", dns.TypeA, nil)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := c.f.bytes()
			ret, out, v := runFrame(t, o, in)
			if ret != xdpPass || v != vPass || !bytes.Equal(in, out) {
				t.Errorf("got %s counted %s (frame changed: %v), want it passed untouched", actionNames[ret], verdictName(v), !bytes.Equal(in, out))
			}
		})
	}
}

// TestAnswersNeverServeAnotherName forces what a hash collision looks like
// to the program: an entry under the key of one name whose value holds
// another name (or another key). It must pass, not answer.
func TestAnswersNeverServeAnotherName(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	publish(t, o, aclAll)
	exp := monoNow(t) + int64(time.Hour)
	mk := func(name string) Answer {
		return answerFrom(t, response(name, dns.TypeA, 0, false, false, []dns.RR{rrA(name, 60, "192.0.2.7")}, nil), exp)
	}
	asked, other := mk("aaa.example.com."), mk("bbb.example.com.") // same length
	_, askedKey, _, err := encodeAnswer(asked)
	if err != nil {
		t.Fatal(err)
	}
	f := frame{src: client4, dst: vip4, payload: plainQuery("aaa.example.com.", dns.TypeA, nil)}
	for _, c := range []struct {
		name   string
		answer Answer
		change func(v *xdpAnswerVal)
	}{
		{"another name of the same length", other, nil},
		{"a name one byte longer", mk("aaaa.example.com."), nil},
		{"the right name but another key inside", asked, func(v *xdpAnswerVal) { v.D.Key.Qtype[1]++ }},
		{"the right name but another name length", asked, func(v *xdpAnswerVal) { v.D.NameLen++ }},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, v, err := encodeAnswer(c.answer)
			if err != nil {
				t.Fatal(err)
			}
			v.D.Key = askedKey
			if c.change != nil {
				c.change(v)
			}
			if err := o.Answers.Put(askedKey, v); err != nil {
				t.Fatal(err)
			}
			in := f.bytes()
			if ret, out, cnt := runFrame(t, o, in); ret != xdpPass || cnt != vPass || !bytes.Equal(in, out) {
				t.Errorf("got %s counted %s", actionNames[ret], verdictName(cnt))
			}
		})
	}
	// And the control: the same raw write with the right value answers.
	_, _, v, _ := encodeAnswer(asked)
	if err := o.Answers.Put(askedKey, v); err != nil {
		t.Fatal(err)
	}
	expect(t, o, "the right value", f, xdpTX, vAnswered)
}

// TestAnswersChargeTheRateLimit: a cached name is no way around the
// budget, and the TC slip counts as truncated, not answered.
func TestAnswersChargeTheRateLimit(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{QPS: 1, Burst: 2, TCSlip: 2}))
	a := answerFrom(t, response("a.example.com.", dns.TypeA, 0, false, false,
		[]dns.RR{rrA("a.example.com.", 60, "192.0.2.1")}, nil), monoNow(t)+int64(time.Hour))
	publish(t, o, aclAll, a)
	f := frame{src: client4, dst: vip4, payload: plainQuery("a.example.com.", dns.TypeA, nil)}
	checkServed(t, o, f, a)
	checkServed(t, o, f, a)
	expect(t, o, "over budget", f, xdpDrop, vRateLimited)
	out := expect(t, o, "over budget, slipped", f, xdpTX, vTruncated)
	checkTCAnswer(t, f, out)
}

// The config refuses more xdp_entries than the answer map holds.
func TestConfigBoundIsTheMapSize(t *testing.T) {
	if config.MaxXDPEntries != MaxAnswers {
		t.Errorf("config.MaxXDPEntries = %d, ebpf.MaxAnswers = %d", config.MaxXDPEntries, MaxAnswers)
	}
}
