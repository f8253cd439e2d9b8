package proxy

import (
	"testing"

	"github.com/miekg/dns"
)

func TestDoHAnswerTTL(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	positive := query("demo.test.", dns.TypeA)
	positive.Response = true
	positive.Answer = []dns.RR{rr("demo.test. 300 IN A 192.0.2.10"), rr("demo.test. 60 IN A 192.0.2.11")}
	positive.SetEdns0(1232, false)
	negative := query("nx.demo.test.", dns.TypeA)
	negative.Response = true
	negative.Rcode = dns.RcodeNameError
	negative.Ns = []dns.RR{rr("demo.test. 3600 IN SOA ns. host. 1 2 3 4 30")}
	servfail := query("demo.test.", dns.TypeA)
	servfail.Response = true
	servfail.Rcode = dns.RcodeServerFailure
	tests := []struct {
		name string
		msg  *dns.Msg
		want uint32
	}{
		{"smallest answer TTL", positive, 60},
		{"negative answer lives for the SOA minimum", negative, 30},
		{"no records: not cacheable", servfail, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := answerTTL(pack(t, tc.msg)); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	t.Run("garbage is not cacheable and does not panic", func(t *testing.T) {
		b := pack(t, positive)
		for i := range b {
			_ = answerTTL(b[:i])
		}
	})
}
