package testlab

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestNamedServesCookiesNSIDAndTSIG(t *testing.T) {
	RequireBinary(t, "named")
	n := StartNamed(t)
	q := new(dns.Msg).SetQuestion("s1."+ConfZone, dns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().Option = append(q.IsEdns0().Option,
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&dns.EDNS0_NSID{Code: dns.EDNS0NSID})
	r, _, err := (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, n.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	var cookie, nsid bool
	for _, o := range r.IsEdns0().Option {
		switch o := o.(type) {
		case *dns.EDNS0_COOKIE:
			cookie = len(o.Cookie) > 16 && o.Cookie[:16] == "0102030405060708"
		case *dns.EDNS0_NSID:
			nsid = o.Nsid != ""
		}
	}
	if !cookie || !nsid {
		t.Errorf("cookie echoed %v, NSID %v: want both; %v", cookie, nsid, r)
	}
	s := new(dns.Msg).SetQuestion(ConfZone, dns.TypeSOA)
	s.SetTsig(NamedTSIGName, dns.HmacSHA256, 300, time.Now().Unix())
	c := &dns.Client{Timeout: 2 * time.Second, TsigSecret: map[string]string{NamedTSIGName: NamedTSIGSecret}}
	r, _, err = c.Exchange(s, n.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	if r.IsTsig() == nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("signed query: want a signed NOERROR, got %v", r)
	}
}
