package proxy

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0x1234
	return m
}

func bigAnswer(t testing.TB, q *dns.Msg, n int) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	for i := 0; i < n; i++ {
		rr, err := dns.NewRR(q.Question[0].Name + " 300 IN TXT \"" + strings.Repeat("x", 90) + "\"")
		if err != nil {
			t.Fatal(err)
		}
		r.Answer = append(r.Answer, rr)
	}
	return r
}
