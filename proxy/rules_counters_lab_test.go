package proxy

import (
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// TestLabRuleActionCounters sends queries that each rule action answers
// through a proxy in front of a real unbound and reads
// anyfront_proxy_rule_actions_total back.
func TestLabRuleActionCounters(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 1, "", `rules:
  - {match: {qname: [nx.example.]}, action: {nxdomain: true}}
  - {match: {qname: [fail.example.]}, action: {rcode: SERVFAIL}}
  - {match: {qname: [tc.example.]}, action: {truncate: true}}
  - {match: {qname: [spoof.example.]}, action: {spoof: ["192.0.2.99"]}}
  - {match: {qname: [refuse.example.]}, action: {refuse: true}}
  - {match: {qname: [drop.example.]}, action: {drop: true}}
  - {match: {qname: [limited.example.]}, action: {ratelimit: {qps: 1, burst: 1, over: refuse}}}
`)
	ask := func(network, name string, want int) {
		t.Helper()
		r, err := l.exchange(network, dnstest.Query(name, dns.TypeA))
		if err != nil {
			t.Fatalf("%s over %s: %v", name, network, err)
		}
		if r.Rcode != want {
			t.Fatalf("%s over %s: %s, want %s", name, network, dns.RcodeToString[r.Rcode], dns.RcodeToString[want])
		}
	}
	ask("udp", "nx.example.", dns.RcodeNameError)
	ask("tcp", "nx.example.", dns.RcodeNameError)
	ask("udp", "fail.example.", dns.RcodeServerFailure)
	ask("udp", "spoof.example.", dns.RcodeSuccess)
	ask("udp", "refuse.example.", dns.RcodeRefused)
	// Under the rate: forwarded, and unbound's NXDOMAIN is no rule's.
	ask("udp", "limited.example.", dns.RcodeNameError)
	ask("udp", "limited.example.", dns.RcodeRefused) // over it: the rule's refuse
	c := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(dnstest.Query("tc.example.", dns.TypeA), l.addr)
	if err != nil || !r.Truncated {
		t.Fatalf("tc.example.: %v %v", r, err)
	}
	ask("tcp", "tc.example.", dns.RcodeNameError) // TCP goes past a truncate rule, to unbound
	c.Timeout = 300 * time.Millisecond
	if _, _, err := c.Exchange(dnstest.Query("drop.example.", dns.TypeA), l.addr); err == nil {
		t.Fatal("a dropped query was answered")
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l.p.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "anyfront_proxy_rule_actions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"nxdomain": 2, "rcode": 1, "truncate": 1, "spoof": 1, "refuse": 2, "drop": 1}
	for action, n := range want {
		if got[action] != n {
			t.Errorf("anyfront_proxy_rule_actions_total{action=%q} = %v, want %v", action, got[action], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("actions exported: %v, want exactly %v", got, want)
	}
}
