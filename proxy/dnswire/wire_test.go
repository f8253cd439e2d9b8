package dnswire

import (
	"bytes"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/miekg/dns"
)

func TestParseQuery(t *testing.T) {
	withEDNS := dnstest.Query("Example.COM.", dns.TypeA)
	withEDNS.SetEdns0(4096, true)
	notify := dnstest.Query("example.com.", dns.TypeSOA)
	notify.Opcode = dns.OpcodeNotify
	response := dnstest.Query("example.com.", dns.TypeA)
	response.Response = true
	tc := dnstest.Query("example.com.", dns.TypeA)
	tc.Truncated = true
	two := dnstest.Query("example.com.", dns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	none := dnstest.Query("example.com.", dns.TypeA)
	none.Question = nil
	valid := dnstest.Pack(t, dnstest.Query("www.Example.com.", dns.TypeAAAA))

	pointer := append([]byte{}, valid[:HeaderLen]...)
	pointer = append(pointer, 0xC0, 12, 0, 1, 0, 1) // a question whose name points at itself
	longLabel := append([]byte{}, valid[:HeaderLen]...)
	longLabel = append(longLabel, 64)
	longLabel = append(longLabel, bytes.Repeat([]byte{'a'}, 64)...)
	longLabel = append(longLabel, 0, 0, 1, 0, 1)
	longName := append([]byte{}, valid[:HeaderLen]...)
	for i := 0; i < 5; i++ { // 5 x 60-byte labels: 305 bytes, over 255
		longName = append(longName, 59)
		longName = append(longName, bytes.Repeat([]byte{'b'}, 59)...)
	}
	longName = append(longName, 0, 0, 1, 0, 1)

	tests := []struct {
		name   string
		msg    []byte
		want   error
		lower  string
		hasOPT bool
		do     bool
		maxUDP int
		qtype  uint16
		opcode int
	}{
		{name: "plain query parses and lowercases the name", msg: valid, lower: "www.example.com.", maxUDP: 512, qtype: dns.TypeAAAA},
		{name: "EDNS query reports buffer size and DO", msg: dnstest.Pack(t, withEDNS), lower: "example.com.", hasOPT: true, do: true, maxUDP: 4096, qtype: dns.TypeA},
		{name: "empty packet is short", msg: nil, want: ErrShort},
		{name: "11 bytes is short", msg: valid[:11], want: ErrShort},
		{name: "QR set is not a query", msg: dnstest.Pack(t, response), want: ErrNotQuery},
		{name: "TC set is forwarded for the backend to judge", msg: dnstest.Pack(t, tc), want: nil},
		{name: "two questions is FORMERR", msg: dnstest.Pack(t, two), want: ErrQDCount},
		{name: "no question is FORMERR", msg: dnstest.Pack(t, none), want: ErrQDCount},
		{name: "NOTIFY is NOTIMP with its question parsed", msg: dnstest.Pack(t, notify), want: ErrOpcode, lower: "example.com.", maxUDP: 512, qtype: dns.TypeSOA, opcode: dns.OpcodeNotify},
		{name: "compression pointer in the question is malformed", msg: pointer, want: ErrBadName},
		{name: "label over 63 bytes is malformed", msg: longLabel, want: ErrBadName},
		{name: "name over 255 bytes is malformed", msg: longName, want: ErrBadName},
		{name: "question cut before QCLASS is malformed", msg: valid[:len(valid)-1], want: ErrBadName},
		{name: "question cut inside the name is malformed", msg: valid[:HeaderLen+3], want: ErrBadName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v View
			err := v.ParseQuery(tt.msg)
			if err != tt.want {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if tt.lower == "" {
				return
			}
			got := PresentName(v.Name())
			if got != tt.lower {
				t.Errorf("name = %q, want %q", got, tt.lower)
			}
			if v.HasOPT != tt.hasOPT || v.DO() != tt.do || v.MaxUDPResponse() != tt.maxUDP {
				t.Errorf("opt=%v do=%v max=%d, want %v %v %d", v.HasOPT, v.DO(), v.MaxUDPResponse(), tt.hasOPT, tt.do, tt.maxUDP)
			}
			if v.QType != tt.qtype || v.Opcode() != tt.opcode {
				t.Errorf("qtype=%d opcode=%d, want %d %d", v.QType, v.Opcode(), tt.qtype, tt.opcode)
			}
		})
	}
}

func TestAppendReply(t *testing.T) {
	for _, tt := range []struct {
		name  string
		edns  bool
		do    bool
		rcode int
	}{
		{name: "SERVFAIL without EDNS has no OPT", rcode: RcodeServFail},
		{name: "REFUSED to an EDNS query carries OPT with DO echoed", edns: true, do: true, rcode: RcodeRefused},
		{name: "NOTIMP to an EDNS query without DO", edns: true, rcode: RcodeNotImp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := dnstest.Query("MiXeD.example.", dns.TypeA)
			q.RecursionDesired = true
			if tt.edns {
				q.SetEdns0(4096, tt.do)
			}
			raw := dnstest.Pack(t, q)
			var v View
			if err := v.ParseQuery(raw); err != nil {
				t.Fatal(err)
			}
			var m dns.Msg
			if err := m.Unpack(AppendReply(nil, raw, &v, tt.rcode)); err != nil {
				t.Fatal(err)
			}
			if m.Id != q.Id || !m.Response || m.Rcode != tt.rcode || !m.RecursionDesired {
				t.Errorf("header: %+v", m.MsgHdr)
			}
			if len(m.Question) != 1 || m.Question[0].Name != "MiXeD.example." {
				t.Errorf("question not echoed with its case: %v", m.Question)
			}
			opt := m.IsEdns0()
			if (opt != nil) != tt.edns {
				t.Fatalf("OPT present = %v, want %v", opt != nil, tt.edns)
			}
			if opt != nil && (opt.UDPSize() != EDNSPayload || opt.Do() != tt.do) {
				t.Errorf("OPT payload %d do %v", opt.UDPSize(), opt.Do())
			}
		})
	}
}

func TestTruncateTo(t *testing.T) {
	t.Run("without EDNS the answer becomes header and question with TC", func(t *testing.T) {
		q := dnstest.Query("big.example.", dns.TypeTXT)
		resp := dnstest.Pack(t, dnstest.BigAnswer(t, q, 30))
		var v View
		if err := MatchResponse(resp, &v, dnstest.Pack(t, q)[HeaderLen:]); err != nil {
			t.Fatal(err)
		}
		n := TruncateTo(resp, &v, 512)
		var m dns.Msg
		if err := m.Unpack(resp[:n]); err != nil {
			t.Fatal(err)
		}
		if !m.Truncated || len(m.Answer) != 0 || len(m.Question) != 1 || m.IsEdns0() != nil {
			t.Errorf("got %v", &m)
		}
	})
	t.Run("the answer's OPT record survives truncation", func(t *testing.T) {
		q := dnstest.Query("big.example.", dns.TypeTXT)
		q.SetEdns0(1232, true)
		r := dnstest.BigAnswer(t, q, 30)
		r.SetEdns0(1232, true)
		resp := dnstest.Pack(t, r)
		var v View
		if err := MatchResponse(resp, &v, dnstest.Pack(t, q)[HeaderLen:len(dnstest.Pack(t, q))-11]); err != nil {
			t.Fatal(err)
		}
		n := TruncateTo(resp, &v, 1232)
		var m dns.Msg
		if err := m.Unpack(resp[:n]); err != nil {
			t.Fatal(err)
		}
		if !m.Truncated || len(m.Answer) != 0 || m.IsEdns0() == nil || !m.IsEdns0().Do() {
			t.Errorf("got %v", &m)
		}
	})
}

func TestMatchResponse(t *testing.T) {
	q := dnstest.Query("Case.Example.", dns.TypeA)
	question := dnstest.Pack(t, q)[HeaderLen:]
	ok := new(dns.Msg)
	ok.SetReply(dnstest.Query("case.example.", dns.TypeA))
	headerOnly := func(rcode int) []byte {
		m := new(dns.Msg)
		m.Response, m.Rcode = true, rcode
		return dnstest.Pack(t, m)
	}
	other := new(dns.Msg)
	other.SetReply(dnstest.Query("other.example.", dns.TypeA))
	notResp := dnstest.Query("case.example.", dns.TypeA)
	for _, tt := range []struct {
		name string
		resp []byte
		ok   bool
	}{
		{name: "same question in another case matches", resp: dnstest.Pack(t, ok), ok: true},
		{name: "another question is refused", resp: dnstest.Pack(t, other)},
		{name: "a query is not a response", resp: dnstest.Pack(t, notResp)},
		{name: "header-only NOERROR is a backend failure", resp: headerOnly(dns.RcodeSuccess)},
		{name: "header-only NXDOMAIN is a backend failure", resp: headerOnly(dns.RcodeNameError)},
		{name: "header-only FORMERR is passed on", resp: headerOnly(dns.RcodeFormatError), ok: true},
		{name: "short response is refused", resp: []byte{1, 2, 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var v View
			err := MatchResponse(tt.resp, &v, question)
			if (err == nil) != tt.ok {
				t.Errorf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

// FuzzParseQuery checks that the parser never panics and agrees with miekg/dns
// on the question of every query it accepts.
func FuzzParseQuery(f *testing.F) {
	for _, m := range []*dns.Msg{dnstest.Query("example.com.", dns.TypeA), dnstest.Query("A.b.C.", dns.TypeMX)} {
		f.Add(dnstest.Pack(f, m))
	}
	e := dnstest.Query("edns.test.", dns.TypeAAAA)
	e.SetEdns0(1232, true)
	f.Add(dnstest.Pack(f, e))
	// Per-client options, a second OPT, TC set, a header-only opcode.
	o := dnstest.Query("opts.test.", dns.TypeA)
	o.SetEdns0(1232, false)
	o.IsEdns0().Option = append(o.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&dns.EDNS0_NSID{Code: dns.EDNS0NSID}, &dns.EDNS0_EXPIRE{Code: dns.EDNS0EXPIRE, Empty: true})
	f.Add(dnstest.Pack(f, o))
	o.Extra = append(o.Extra, o.Extra[0])
	f.Add(dnstest.Pack(f, o))
	tc := dnstest.Query("tc.test.", dns.TypeA)
	tc.Truncated = true
	f.Add(dnstest.Pack(f, tc))
	f.Add([]byte{0, 1, 0x78, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var v View
		if v.ParseQuery(b) != nil {
			return
		}
		var m dns.Msg
		if err := m.Unpack(b); err != nil || len(m.Question) != 1 {
			return // miekg is stricter about the rest of the message
		}
		want := strings.ToLower(m.Question[0].Name)
		got := PresentName(v.Name())
		// miekg escapes unusual bytes in presentation format; compare only
		// plain names.
		if !strings.ContainsAny(want, "\\") && got != want {
			t.Fatalf("name %q, miekg says %q", got, want)
		}
		if v.QType != m.Question[0].Qtype {
			t.Fatalf("qtype %d, miekg says %d", v.QType, m.Question[0].Qtype)
		}
	})
}
