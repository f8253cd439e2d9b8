package pcache

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/proxy/dnswire"
)

// qview is a parsed query with its key, as the proxy core keeps them.
type qview struct {
	dnswire.View
	key Key
}

func pack(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func unpack(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack answer: %v", err)
	}
	return m
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

// wireName is name in lowercase wire format, as Purge takes it.
func wireName(t testing.TB, name string) []byte {
	t.Helper()
	buf := make([]byte, dnswire.MaxNameLen+1)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}
