package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestClosedPortBackendAtStart (issue 15) starts anyfront in front of two live unbound
// and one address where nothing listens (ICMP port unreachable), and loads
// it at once, before health checking has had a chance to mark the dead one
// down. Its share of the queries must move to the live backends: no
// SERVFAIL, no loss, in any of five fresh starts.
func TestClosedPortBackendAtStart(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	deadPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("pools:\n  default:\n    policy: roundrobin\n    backends:\n"+
		"      - {name: r1, address: %q}\n      - {name: r2, address: %q}\n      - {name: dead, address: \"127.0.0.1:%d\"}\n"+
		"    healthcheck: {qname: \"health.anyfront.test.\", qtype: SOA, interval: 1s, timeout: 500ms, rise: 2, fall: 2}\n",
		r1.Addr, r2.Addr, deadPort)
	for i := range 5 {
		t.Run(fmt.Sprintf("start %d", i+1), func(t *testing.T) {
			n := startNode(t, body)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			names := make([]string, 3000)
			for j := range names {
				names[j] = fmt.Sprintf("cp%d-%d-%d.%s", i, j, time.Now().UnixNano()%100000, testlab.RandZone)
			}
			wait, err := testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{
				Server: n.dns, Duration: 1500 * time.Millisecond, Clients: 4, Names: names, Timeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			res, err := wait()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("dnsperf: sent %d completed %d lost %d rcodes %v", res.Sent, res.Completed, res.Lost, res.Rcodes)
			// The root cause was here: the backend socket's one pending
			// ICMP error failed sends to the healthy backends, whose
			// queries then waited out a timeout.
			if se := n.metric(`anyfront_proxy_events_total{event="send_error"}`); se != 0 {
				t.Errorf("%v sends to backends failed: a refusing backend's ICMP errors fail others' sends", se)
			}
			if res.Sent < 3000 {
				t.Errorf("dnsperf sent only %d queries", res.Sent)
			}
			if res.Lost != 0 || res.Rcodes["SERVFAIL"] != 0 {
				t.Errorf("lost %d, SERVFAIL %d of %d with a closed-port backend at start", res.Lost, res.Rcodes["SERVFAIL"], res.Sent)
			}
		})
	}
}
