package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// The health check bounds: fall x interval + timeout, and rise x interval,
// from the pools() config; slack covers scheduling on a loaded CI machine.
const (
	downBound = 2*time.Second + 500*time.Millisecond
	upBound   = 2 * time.Second
	slack     = 2 * time.Second
)

// TestFailoverUnderLoad kills or freezes one of two backends while dnsperf
// offers 2,000 q/s: no query may be lost or answered SERVFAIL, the API must
// show the backend down within the health-check bound, and up again after
// it recovers.
func TestFailoverUnderLoad(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	for _, tt := range []struct {
		name    string
		fail    func(*testlab.Unbound) error
		recover func(*testlab.Unbound) error
	}{
		{"kill -9", func(u *testlab.Unbound) error { u.Kill(); return nil }, (*testlab.Unbound).Restart},
		{"kill -STOP", (*testlab.Unbound).Stop, (*testlab.Unbound).Cont},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
			r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
			n := startNode(t, pools(r1, r2))
			n.waitFor("both backends checked up", 10*time.Second, func() bool {
				b := n.backends()
				return b["r1"].Checked && b["r1"].Health == "up" && b["r2"].Checked && b["r2"].Health == "up"
			})

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wait, err := testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{
				Server: n.dns, Duration: 9 * time.Second, QPS: 2000, Clients: 4,
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Second) // load reaches steady state before the failure
			failedAt := time.Now()
			if err := tt.fail(r1); err != nil {
				t.Fatal(err)
			}
			n.waitFor("r1 down", downBound+slack, func() bool { return n.backends()["r1"].Health == "down" })
			t.Logf("r1 marked down %v after the failure (bound %v)", time.Since(failedAt).Round(time.Millisecond), downBound)

			res, err := wait()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("dnsperf: sent %d completed %d lost %d rcodes %v", res.Sent, res.Completed, res.Lost, res.Rcodes)
			if res.Sent < 15000 {
				t.Errorf("dnsperf sent only %d queries", res.Sent)
			}
			if res.Lost != 0 || res.Rcodes["SERVFAIL"] != 0 || res.Rcodes["NOERROR"] != res.Completed {
				t.Errorf("lost %d, SERVFAIL %d of %d: the failover lost queries\n%s", res.Lost, res.Rcodes["SERVFAIL"], res.Sent, res.Output)
			}

			recoveredAt := time.Now()
			if err := tt.recover(r1); err != nil {
				t.Fatal(err)
			}
			n.waitFor("r1 up again", upBound+slack, func() bool { return n.backends()["r1"].Health == "up" })
			t.Logf("r1 back up %v after recovery (bound %v)", time.Since(recoveredAt).Round(time.Millisecond), upBound)
		})
	}
}

// TestDrainUnderLoad drains a backend over the API while dnsperf runs: the
// drained backend gets no new query (unbound's own counters say so), no
// query fails, and undrain brings it back.
func TestDrainUnderLoad(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	n := startNode(t, pools(r1, r2))

	aQueries := func(u *testlab.Unbound) float64 {
		st, err := u.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st["num.query.type.A"]
	}

	t.Run("without a valid token nothing changes", func(t *testing.T) {
		for _, token := range []string{"", "wrong-token"} {
			if code, body := n.post("/api/v1/backends/r1/drain", token); code != 401 {
				t.Errorf("token %q: %d %s, want 401", token, code, body)
			}
		}
		if b := n.backends()["r1"]; b.Admin != "auto" {
			t.Errorf("r1 admin %q after unauthorised drains", b.Admin)
		}
	})

	if out, code := n.ctl("drain", "r1"); code != 0 {
		t.Fatalf("anyfrontctl drain: exit %d\n%s", code, out)
	}
	if b := n.backends()["r1"]; b.Admin != "drain" {
		t.Fatalf("r1 admin %q after drain", b.Admin)
	}
	before := aQueries(r1)
	res, err := runDnsperf(t, n, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := aQueries(r1) - before; got != 0 {
		t.Errorf("drained r1 received %v A queries", got)
	}
	if res.Lost != 0 || res.Rcodes["NOERROR"] != res.Completed || res.Completed < 5000 {
		t.Errorf("during drain: %+v", res)
	}

	out, code := n.ctl("backends")
	if code != 0 || !strings.Contains(out, "drain") {
		t.Errorf("anyfrontctl backends: exit %d\n%s", code, out)
	}
	if out, code := n.ctl("undrain", "r1"); code != 0 {
		t.Fatalf("anyfrontctl undrain: exit %d\n%s", code, out)
	}
	before = aQueries(r1)
	if _, err := runDnsperf(t, n, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := aQueries(r1) - before; got < 1000 {
		t.Errorf("undrained r1 received only %v A queries", got)
	}
}

func runDnsperf(t *testing.T, n *node, d time.Duration) (*testlab.DnsperfResult, error) {
	wait, err := testlab.StartDnsperf(context.Background(), t.TempDir(), testlab.DnsperfOptions{
		Server: n.dns, Duration: d, QPS: 2000, Clients: 4,
	})
	if err != nil {
		return nil, err
	}
	return wait()
}
