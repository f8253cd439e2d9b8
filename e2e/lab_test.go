package e2e

import (
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/anycastlab"
	"github.com/anyfront/anyfront/internal/testlab/birdlab"
)

// Lab timings: short so the test stays quick, and the bound the issue
// states for a node whose backends all die.
const (
	labWithdrawAfter = time.Second
	labGrace         = 3 * time.Second
	// labWithdrawBound is fall x interval + timeout + withdraw_after + 1s
	// with the lab's default health check (fall 2, interval 1s, timeout
	// 500ms).
	labWithdrawBound = 2*time.Second + 500*time.Millisecond + labWithdrawAfter + time.Second
	// labRouteSlack is how long after BIRD shows a route change the
	// router's kernel may still forward by the old route: BIRD exports at
	// once, and we see the change only when we next poll.
	labRouteSlack = 300 * time.Millisecond
	labWait       = 15 * time.Second
)

func labBinaries(t *testing.T) anycastlab.Options {
	testlab.RequireRoot(t)
	for _, b := range []string{"ip", "bird", "birdc", "unbound", "unbound-control"} {
		testlab.RequireBinary(t, b)
	}
	return anycastlab.Options{
		Anyfront:    filepath.Join(binDir, "anyfront"),
		Anyfrontctl: filepath.Join(binDir, "anyfrontctl"),
	}
}

// waitNodeRoutes polls BIRD until cond holds for the VIP routes it has
// from node, and returns when it first held.
func waitNodeRoutes(t *testing.T, l *anycastlab.Lab, node, what string, cond func([]birdlab.Route) bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(labWait)
	var last []birdlab.Route
	for time.Now().Before(deadline) {
		byNode, err := l.NodeRoutes()
		if err != nil {
			t.Fatal(err)
		}
		if last = byNode[node]; cond(last) {
			return time.Now()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("BIRD: %s: not within %s; routes from %s: %v", what, labWait, node, last)
	return time.Time{}
}

func bothDraining(rs []birdlab.Route) bool {
	if len(rs) != 2 {
		return false
	}
	for _, r := range rs {
		if !r.HasCommunity("65535:0") || r.LocalPref != 0 {
			return false
		}
	}
	return true
}

func bothPlain(rs []birdlab.Route) bool {
	if len(rs) != 2 {
		return false
	}
	for _, r := range rs {
		if r.HasCommunity("65535:0") {
			return false
		}
	}
	return true
}

func none(rs []birdlab.Route) bool { return len(rs) == 0 }

// waitTraffic waits until the stream has answers from every node in want,
// sent after from.
func waitTraffic(t *testing.T, s *anycastlab.QueryStream, from time.Time, want ...string) {
	t.Helper()
	deadline := time.Now().Add(labWait)
	for time.Now().Before(deadline) {
		sum := anycastlab.Summarize(s.Results(), from, time.Time{})
		ok := true
		for _, n := range want {
			ok = ok && sum.ByNode[n] >= 10
		}
		if ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no traffic from %v within %s: %s", want, labWait, anycastlab.Summarize(s.Results(), from, time.Time{}))
}

// TestLab is make lab as a test: a router with ECMP, two nodes announcing
// the VIPs, a client sending a steady stream of queries at them. Draining
// node 1 loses no query; killing node 1's backends loses queries only until
// its route is withdrawn, within the withdraw bound.
func TestLab(t *testing.T) {
	o := labBinaries(t)
	o.WithdrawAfter, o.DrainGrace = labWithdrawAfter, labGrace
	l := anycastlab.Start(t, o)
	n1 := l.Node("n1")

	for _, vip := range []netip.Addr{anycastlab.VIP4, anycastlab.VIP6} {
		r, err := l.KernelRoute(vip)
		if err != nil || strings.Count(r, "nexthop via") != 2 {
			t.Fatalf("router's kernel route for %s is not ECMP over both nodes: %q %v", vip, r, err)
		}
	}

	s, err := anycastlab.StartQueryStream(l.Client, anycastlab.StreamOptions{
		Targets: []netip.AddrPort{netip.AddrPortFrom(anycastlab.VIP4, 53), netip.AddrPortFrom(anycastlab.VIP6, 53)},
		Sockets: 16, Rate: 200, Timeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	start := time.Now()
	waitTraffic(t, s, start, "n1", "n2")

	t.Run("drain node 1: no query lost, traffic moves to node 2", func(t *testing.T) {
		drainAt := time.Now()
		if code, body, err := n1.HTTP("POST", "/api/v1/node/drain"); err != nil || code != http.StatusOK {
			t.Fatalf("drain: %d %s %v", code, body, err)
		}
		tComm := waitNodeRoutes(t, l, "n1", "n1's routes carry (65535,0) with local-pref 0", bothDraining)
		// Local-pref 0 takes n1 out of the ECMP set at once.
		for vip, nh := range map[netip.Addr]netip.Addr{anycastlab.VIP4: n1.Addr4, anycastlab.VIP6: n1.Addr6} {
			if r, err := l.KernelRoute(vip); err != nil || strings.Contains(r, "via "+nh.String()+" ") || !strings.Contains(r, "via ") {
				t.Errorf("router's kernel route for %s while n1 drains: %q %v, want only n2", vip, r, err)
			}
		}
		tGone := waitNodeRoutes(t, l, "n1", "n1's routes withdrawn", none)
		t.Logf("drain: (65535,0) at the router after %v, withdrawn after %v (grace %v)",
			tComm.Sub(drainAt).Round(time.Millisecond), tGone.Sub(drainAt).Round(time.Millisecond), labGrace)
		if d := tGone.Sub(drainAt); d < labGrace-200*time.Millisecond || d > labGrace+2*time.Second {
			t.Errorf("withdrawn %v after the drain, want about the grace %v", d, labGrace)
		}
		if d := tGone.Sub(tComm); d < labGrace-time.Second {
			t.Errorf("only %v between the community and the withdrawal (grace %v)", d, labGrace)
		}
		time.Sleep(time.Second) // let the stream run on the withdrawn route: what is sent is checked below
		rs := s.Results()
		all := anycastlab.Summarize(rs, drainAt, time.Time{})
		moved := anycastlab.Summarize(rs, tComm.Add(labRouteSlack), time.Time{})
		t.Logf("during the drain: %s; after the community reached the router: %s", all, moved)
		if all.Failed != 0 {
			t.Errorf("%d queries failed during the drain: %v", all.Failed, all.Errors)
		}
		if moved.ByNode["n1"] != 0 || moved.ByNode["n2"] < 100 {
			t.Errorf("traffic not all on n2 once n1 was draining: %v", moved.ByNode)
		}

		out, code, err := n1.Ctl("node", "undrain")
		if err != nil || code != 0 {
			t.Fatalf("anyfrontctl node undrain: %d %v\n%s", code, err, out)
		}
		tBack := waitNodeRoutes(t, l, "n1", "n1's routes back without the community", bothPlain)
		waitTraffic(t, s, tBack.Add(labRouteSlack), "n1", "n2")
		if sum := anycastlab.Summarize(s.Results(), drainAt, time.Time{}); sum.Failed != 0 {
			t.Errorf("%d queries failed around the undrain: %v", sum.Failed, sum.Errors)
		}
	})

	t.Run("node 1's backends die: failures only until the withdraw", func(t *testing.T) {
		before := anycastlab.Summarize(s.Results(), start, time.Time{})
		if before.Failed != 0 {
			t.Fatalf("queries failed before the kill: %s", before)
		}
		killAt := time.Now()
		for _, u := range n1.Backends {
			u.Kill()
		}
		tGone := waitNodeRoutes(t, l, "n1", "n1's routes withdrawn", none)
		t.Logf("backends killed: n1's routes withdrawn after %v (bound %v)", tGone.Sub(killAt).Round(time.Millisecond), labWithdrawBound)
		if d := tGone.Sub(killAt); d > labWithdrawBound {
			t.Errorf("withdrawn %v after the kill, bound %v", d, labWithdrawBound)
		}
		time.Sleep(2 * time.Second) // traffic after the withdraw, checked below
		rs := s.Results()
		sum := anycastlab.Summarize(rs, killAt, time.Time{})
		after := anycastlab.Summarize(rs, tGone.Add(labRouteSlack), time.Time{})
		t.Logf("after the kill: %s", sum)
		if sum.Failed == 0 {
			t.Logf("no query failed (none was hashed to n1 before the withdraw?)")
		} else {
			t.Logf("LOSS WINDOW: queries failed from %v to %v after the kill (%v of failures, %d of %d queries; bound %v)",
				sum.FirstFail.Sub(killAt).Round(time.Millisecond), sum.LastFail.Sub(killAt).Round(time.Millisecond),
				sum.Window().Round(time.Millisecond), sum.Failed, sum.Sent, labWithdrawBound)
			if d := sum.LastFail.Sub(killAt); d > labWithdrawBound {
				t.Errorf("queries failed until %v after the kill, bound %v", d, labWithdrawBound)
			}
		}
		if after.Failed != 0 || after.ByNode["n1"] != 0 || after.ByNode["n2"] < 200 {
			t.Errorf("after the withdraw, want every query answered by n2: %s", after)
		}

		for _, u := range n1.Backends {
			if err := u.Restart(); err != nil {
				t.Fatal(err)
			}
		}
		tBack := waitNodeRoutes(t, l, "n1", "n1's routes back after its backends recover", bothPlain)
		waitTraffic(t, s, tBack.Add(labRouteSlack), "n1", "n2")
	})
	t.Logf("whole run: %s", anycastlab.Summarize(s.Stop(), start, time.Time{}))
}
