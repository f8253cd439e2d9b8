package e2e

import (
	"context"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// stoppedLine is the daemon's last word on the proxy: how many queries it
// took in over its life.
var stoppedLine = regexp.MustCompile(`msg="proxy stopped".* udp_queries=(\d+) tcp_queries=(\d+)`)

// TestSIGTERMUnderDnsperf sends SIGTERM while dnsperf loads the daemon:
// it must exit 0 within its grace, and every query it took in before it
// stopped reading must have been answered. dnsperf's count of answers is
// compared with the proxy's own count of queries received (its final log
// line): equal means none was dropped; whatever dnsperf sent beyond that
// arrived after the proxy stopped reading, and is lost by design.
func TestSIGTERMUnderDnsperf(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	// The grace for answers in flight is timeout x (retries + 1).
	const timeout, retries = time.Second, 1
	grace := timeout * (retries + 1)
	n := startNode(t, "proxy: {timeout: 1s, retries: 1}\n"+pools(r1, r2))
	n.waitFor("both backends checked up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Health == "up" && b["r2"].Health == "up"
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait, err := testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{
		Server: n.dns, Duration: 5 * time.Second, QPS: 4000, Clients: 4, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.waitFor("the load to flow", 5*time.Second, func() bool {
		return n.metric(`anyfront_proxy_queries_total{transport="udp"}`) > 4000
	})
	inflight := n.metric("anyfront_proxy_udp_inflight")
	sigAt := time.Now()
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var took time.Duration
	select {
	case err := <-n.exited:
		took = time.Since(sigAt)
		n.exited <- err // for startNode's cleanup
		if err != nil {
			t.Errorf("anyfront exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(grace + 5*time.Second):
		t.Fatalf("anyfront still running %v after SIGTERM", grace+5*time.Second)
	}
	res, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	m := stoppedLine.FindStringSubmatch(n.logs.String())
	if m == nil {
		t.Fatalf("no \"proxy stopped\" line with the proxy's counts in the log:\n%s", n.logs.String())
	}
	received, _ := strconv.Atoi(m[1])
	t.Logf("SIGTERM with %.0f queries in flight; exit after %v (grace %v); dnsperf sent %d, answered %d (rcodes %v), lost %d; the proxy received %d",
		inflight, took.Round(time.Millisecond), grace, res.Sent, res.Completed, res.Rcodes, res.Lost, received)

	if took > grace+time.Second {
		t.Errorf("exit took %v, over the grace of %v", took, grace)
	}
	if res.Completed != received {
		t.Errorf("the proxy received %d queries, dnsperf got %d answers: %d accepted queries went unanswered",
			received, res.Completed, received-res.Completed)
	}
	if res.Rcodes["NOERROR"] != res.Completed {
		t.Errorf("answers other than NOERROR during the shutdown: %v", res.Rcodes)
	}
	// The check above means something only if the load ran on both sides
	// of the signal.
	if received < 4000 || res.Sent <= received {
		t.Errorf("dnsperf sent %d, the proxy received %d: SIGTERM did not land mid-run", res.Sent, received)
	}
}
