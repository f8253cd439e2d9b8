package healthcheck

import (
	"fmt"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// A backend behind PROXY protocol drops every query without a header, so
// only probes that carry one can find it up.
func TestLabProbesCarryProxyHeader(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{ProxyProtocol: true, LogQueries: true})
	for _, tcp := range []bool{false, true} {
		t.Run(fmt.Sprintf("tcp=%v", tcp), func(t *testing.T) {
			hc := fmt.Sprintf("{qname: health.test., interval: 200ms, timeout: 100ms, rise: 2, fall: 2, tcp: %v}", tcp)
			cfg := parse(t, fmt.Sprintf("  p:\n    healthcheck: %s\n    backends:\n"+
				"      - {name: with, address: %q, proxy_protocol: true}\n"+
				"      - {name: without, address: %q}\n", hc, u.Addr, u.Addr))
			l := newLab(t, cfg)
			l.waitHealth(t, "with", state.HealthUp, waitLimit)
			l.waitHealth(t, "without", state.HealthDown, waitLimit)
			// The LOCAL header tells unbound to take the real source:
			// the probe is anyfront's own.
			got, err := u.QueriesFor("health.test.")
			if err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || got[len(got)-1].String() != "127.0.0.1" {
				t.Fatalf("unbound logged health.test. from %v, want 127.0.0.1", got)
			}
		})
	}
}
