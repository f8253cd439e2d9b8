package healthcheck

import (
	"testing"

	"github.com/miekg/dns"
)

// reply builds an answer to the probe of set, then lets change spoil it.
func reply(t *testing.T, set *settings, change func(m *dns.Msg)) []byte {
	t.Helper()
	q := new(dns.Msg)
	if err := q.Unpack(set.query); err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg).SetReply(q)
	rr, err := dns.NewRR(q.Question[0].Name + " 0 IN A 192.0.2.1")
	if err != nil {
		t.Fatal(err)
	}
	m.Answer = append(m.Answer, rr)
	if change != nil {
		change(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJudge(t *testing.T) {
	set, err := newSettings(testHealthCheck("health.test.", dns.TypeA, dns.RcodeSuccess, dns.RcodeNameError))
	if err != nil {
		t.Fatal(err)
	}
	soa := func(m *dns.Msg) {
		m.Answer = nil
		rr, _ := dns.NewRR(". 60 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 60")
		m.Ns = []dns.RR{rr}
	}
	tests := []struct {
		name   string
		msg    []byte
		want   result
		rcode  int
		detail string
	}{
		{"an answer is healthy", reply(t, set, nil), resultSuccess, dns.RcodeSuccess, ""},
		{"NXDOMAIN with an SOA is healthy", reply(t, set, func(m *dns.Msg) { soa(m); m.Rcode = dns.RcodeNameError }), resultSuccess, dns.RcodeNameError, ""},
		{"the name echoed in mixed case is the same question", reply(t, set, func(m *dns.Msg) { m.Question[0].Name = "HeAlTh.TeSt." }), resultSuccess, 0, ""},
		{"SERVFAIL fails", reply(t, set, func(m *dns.Msg) { m.Answer = nil; m.Rcode = dns.RcodeServerFailure }), resultRcode, dns.RcodeServerFailure, ""},
		{"REFUSED fails", reply(t, set, func(m *dns.Msg) { m.Answer = nil; m.Rcode = dns.RcodeRefused }), resultRcode, dns.RcodeRefused, ""},
		{"a header-only NOERROR fails", reply(t, set, func(m *dns.Msg) { m.Answer = nil }), resultBadAnswer, 0, badHeaderOnly},
		{"a truncated header-only answer shows a live server", reply(t, set, func(m *dns.Msg) { m.Answer = nil; m.Truncated = true }), resultSuccess, 0, ""},
		{"a query is not an answer", reply(t, set, func(m *dns.Msg) { m.Response = false }), resultBadAnswer, 0, badNotResponse},
		{"another opcode fails", reply(t, set, func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }), resultBadAnswer, 0, badOpcode},
		{"another name fails", reply(t, set, func(m *dns.Msg) { m.Question[0].Name = "other.test." }), resultBadAnswer, 0, badQuestion},
		{"another type fails", reply(t, set, func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAAAA }), resultBadAnswer, 0, badQuestion},
		{"no question fails", reply(t, set, func(m *dns.Msg) { m.Question = nil }), resultBadAnswer, 0, badQDCount},
		{"a short packet fails", []byte{0, 1, 0x80}, resultBadAnswer, 0, badShort},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, rcode, detail := judge(tt.msg, set)
			if r != tt.want || rcode != tt.rcode || detail != tt.detail {
				t.Errorf("judge = %s, rcode %d, %q; want %s, rcode %d, %q", resultNames[r], rcode, detail, resultNames[tt.want], tt.rcode, tt.detail)
			}
		})
	}
	t.Run("judging allocates nothing", func(t *testing.T) {
		msg := reply(t, set, nil)
		if n := testing.AllocsPerRun(100, func() { judge(msg, set) }); n != 0 {
			t.Errorf("judge allocates %.1f times", n)
		}
	})
}

// TestJudgeComparesTheTypeExactly: type 97 is 0x0061 ('a') and type 65 is
// 0x0041 ('A'); comparing the whole question case-insensitively would take
// one for the other.
func TestJudgeComparesTheTypeExactly(t *testing.T) {
	set65, err := newSettings(testHealthCheck("health.test.", 65, dns.RcodeSuccess))
	if err != nil {
		t.Fatal(err)
	}
	set97, _ := newSettings(testHealthCheck("health.test.", 97, dns.RcodeSuccess))
	if r, _, _ := judge(reply(t, set97, nil), set65); r != resultBadAnswer {
		t.Errorf("an answer for type 97 passed for a type 65 probe: %s", resultNames[r])
	}
}
