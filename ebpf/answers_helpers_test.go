package ebpf

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// monoNow is CLOCK_MONOTONIC in nanoseconds, the program's clock.
func monoNow(t testing.TB) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}

// answerFrom splits a packed response the way the proxy stores one: the
// key from its question (and OPT), the flags and counts from its header,
// and everything after the question as the sections.
func answerFrom(t testing.TB, resp *dns.Msg, expires int64) Answer {
	t.Helper()
	b, err := resp.Pack()
	if err != nil {
		t.Fatal(err)
	}
	q := resp.Question[0]
	name := make([]byte, 256)
	n, err := dns.PackDomainName(q.Name, name, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	qend := 12 + n + 4
	key := AnswerKey{Name: string(lowerWire(string(name[:n]))), Type: q.Qtype, Class: q.Qclass, CD: resp.CheckingDisabled}
	if opt := resp.IsEdns0(); opt != nil {
		key.EDNS, key.DO = true, opt.Do()
	}
	return Answer{
		Key:   key,
		Flags: binary.BigEndian.Uint16(b[2:]),
		Counts: [3]uint16{binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:]),
			binary.BigEndian.Uint16(b[10:])},
		Sections: b[qend:],
		Expires:  expires,
	}
}

// expectedDNS is the answer XDP must send to the DNS query q for a: q's
// ID, a's flags with q's RD bit, one question, a's counts, q's question
// bytes as they were, a's sections. Built from the bytes, independently of
// the program's way of doing it.
func expectedDNS(q []byte, qend int, a Answer) []byte {
	out := append([]byte{}, q[:2]...)
	out = binary.BigEndian.AppendUint16(out, a.Flags&^0x0100|binary.BigEndian.Uint16(q[2:])&0x0100)
	out = append(out, 0, 1)
	for _, c := range a.Counts {
		out = binary.BigEndian.AppendUint16(out, c)
	}
	out = append(out, q[12:qend]...)
	return append(out, a.Sections...)
}

// expectedFrame is the whole frame XDP must send back for the query frame
// f: its payload replaced, addresses and ports swapped, TTL 64, and the
// MACs swapped (frame.bytes always writes the server's MAC first).
func expectedFrame(f frame, payload []byte) []byte {
	r := frame{vlans: f.vlans, src: f.dst, dst: f.src, payload: payload}
	b := r.bytes()
	mac := append([]byte{}, b[:6]...)
	copy(b[:6], b[6:12])
	copy(b[6:12], mac)
	return b
}

// questionEnd returns the offset just past the question of a packed query.
func questionEnd(t testing.TB, q []byte) int {
	t.Helper()
	off := 12
	for q[off] != 0 {
		off += 1 + int(q[off])
	}
	return off + 1 + 4
}

// response builds a response to name/qtype with the given records (the
// answer section) and ns (authority), optionally with an OPT record.
func response(name string, qtype uint16, rcode int, edns, do bool, answer, ns []dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Response, m.RecursionAvailable, m.RecursionDesired = true, true, true
	m.Rcode = rcode
	m.Answer, m.Ns = answer, ns
	m.Compress = true
	if edns {
		m.SetEdns0(1232, do)
	}
	return m
}

func rrA(name string, ttl uint32, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(ip).To4()}
}

func rrAAAA(name string, ttl uint32, ip string) dns.RR {
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.ParseIP(ip)}
}

func rrCNAME(name string, ttl uint32, target string) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: target}
}

func rrSOA(zone string, ttl uint32) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns1." + zone, Mbox: "hostmaster." + zone, Serial: 2026112301, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
}

// plainQuery packs a query for name/qtype with ID 0x5151 and RD, after
// mutate has changed it.
func plainQuery(name string, qtype uint16, mutate func(*dns.Msg)) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x5151
	if mutate != nil {
		mutate(m)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// withEDNS adds an OPT record with the given payload size and DO bit.
func withEDNS(size uint16, do bool) func(*dns.Msg) {
	return func(m *dns.Msg) { m.SetEdns0(size, do) }
}

// aclAll is the ACL the answer tests publish: the ordinary clients'
// networks, not client4c's nor client6c's.
var aclAll = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/48")}
