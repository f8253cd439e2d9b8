package e2e

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab/anycastlab"
)

// bgpGrace is the drain grace of the daemon test: long enough to see the
// community at the router, short for the test's sake.
const bgpGrace = 2 * time.Second

// TestDaemonBGP runs bin/anyfront in a namespace with a bgp section, BIRD 2
// in another: the VIPs arrive with the right next hops, anyfrontctl bgp
// shows the session and the announcements, and SIGTERM drains (65535,0),
// withdraws, and only then exits 0.
func TestDaemonBGP(t *testing.T) {
	o := labBinaries(t)
	o.Nodes, o.NoClient = 1, true
	o.WithdrawAfter, o.DrainGrace = time.Second, bgpGrace
	l := anycastlab.Start(t, o)
	n := l.Node("n1")

	t.Run("routes arrive with the node's next hops", func(t *testing.T) {
		rs, err := l.Routes()
		if err != nil {
			t.Fatal(err)
		}
		want := map[netip.Prefix]netip.Addr{
			netip.PrefixFrom(anycastlab.VIP4, 32):  n.Addr4,
			netip.PrefixFrom(anycastlab.VIP6, 128): n.Addr6,
		}
		if len(rs) != len(want) {
			t.Fatalf("BIRD has %v, want one route per VIP", rs)
		}
		for _, r := range rs {
			if nh, ok := want[r.Prefix]; !ok || len(r.NextHops) != 1 || r.NextHops[0] != nh ||
				!slices.Equal(r.ASPath, []uint32{anycastlab.NodeASN}) || r.Protocol != "n1" || len(r.Communities) != 0 {
				t.Errorf("route %s, want next hop %v, AS path [%d], no community", r, want[r.Prefix], anycastlab.NodeASN)
			}
		}
		// The router's kernel forwards the VIPs to the node.
		for vip, nh := range map[netip.Addr]netip.Addr{anycastlab.VIP4: n.Addr4, anycastlab.VIP6: n.Addr6} {
			if kr, err := l.KernelRoute(vip); err != nil || !strings.Contains(kr, "via "+nh.String()) {
				t.Errorf("router's kernel route for %s: %q %v, want via %s", vip, kr, err, nh)
			}
		}
	})

	t.Run("anyfrontctl bgp shows the session and the prefixes", func(t *testing.T) {
		out, code, err := n.Ctl("bgp")
		if err != nil || code != 0 {
			t.Fatalf("anyfrontctl bgp: exit %d %v\n%s", code, err, out)
		}
		for _, s := range []string{n.Router4.String(), "established", "192.0.2.53/32", "2001:db8:53::53/128", "pool healthy"} {
			if !strings.Contains(out, s) {
				t.Errorf("anyfrontctl bgp lacks %q:\n%s", s, out)
			}
		}
		out, code, err = n.Ctl("-json", "bgp")
		if err != nil || code != 0 {
			t.Fatalf("anyfrontctl -json bgp: exit %d %v\n%s", code, err, out)
		}
		var st struct {
			Running  bool
			Peers    []struct{ Address, State string }
			Prefixes []struct {
				Prefix    string
				Announced bool
				Reason    string
			}
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !st.Running || len(st.Peers) != 1 || st.Peers[0].Address != n.Router4.String() || st.Peers[0].State != "established" {
			t.Errorf("peers: %+v (running %v)", st.Peers, st.Running)
		}
		if len(st.Prefixes) != 2 || !st.Prefixes[0].Announced || !st.Prefixes[1].Announced {
			t.Errorf("prefixes: %+v", st.Prefixes)
		}
	})

	t.Run("SIGTERM: (65535,0), then withdrawn, then exit 0", func(t *testing.T) {
		_, withdrawsBefore, err := l.Bird.ImportStats("n1")
		if err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		var exitAt time.Time
		var code int
		var waitErr error
		go func() {
			code, waitErr = n.Wait(bgpGrace + 10*time.Second)
			exitAt = time.Now()
			close(exited)
		}()
		termAt := time.Now()
		if err := n.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		// Poll BIRD until both routes are gone; note when they carried the
		// community, when they went, and whether the session was still up
		// then (a withdraw, not a session drop, removed them).
		var commAt, goneAt time.Time
		var stateAtGone string
		deadline := termAt.Add(bgpGrace + 10*time.Second)
		for goneAt.IsZero() && time.Now().Before(deadline) {
			byNode, err := l.NodeRoutes()
			if err != nil {
				t.Fatal(err)
			}
			rs := byNode["n1"]
			switch {
			case bothDraining(rs) && commAt.IsZero():
				commAt = time.Now()
			case len(rs) == 0:
				goneAt = time.Now()
				stateAtGone, _ = l.Bird.ProtocolState("n1")
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, withdrawsAfter, statsErr := l.Bird.ImportStats("n1")
		<-exited
		if waitErr != nil || code != 0 {
			t.Fatalf("anyfront after SIGTERM: exit %d, %v", code, waitErr)
		}
		t.Logf("SIGTERM: community at the router after %v, withdrawn after %v (session %q then), exited after %v; BIRD received %d withdraws",
			sinceOrNever(commAt, termAt), sinceOrNever(goneAt, termAt), stateAtGone, exitAt.Sub(termAt).Round(time.Millisecond),
			withdrawsAfter-withdrawsBefore)
		switch {
		case commAt.IsZero():
			t.Errorf("BIRD never saw the routes with (65535,0) and local-pref 0")
		case goneAt.IsZero():
			t.Errorf("routes not withdrawn")
		case goneAt.Sub(commAt) < bgpGrace-500*time.Millisecond:
			t.Errorf("withdrawn %v after the community, grace %v", goneAt.Sub(commAt), bgpGrace)
		}
		// Withdrawn by UPDATE before the session closed: BIRD counted
		// both withdraws, or still had the session up when they went.
		if !strings.Contains(stateAtGone, "Established") && (statsErr != nil || withdrawsAfter-withdrawsBefore < 2) {
			t.Errorf("routes went with the session (state %q, %d withdraws received, %v), not by a withdraw before exit",
				stateAtGone, withdrawsAfter-withdrawsBefore, statsErr)
		}
		if !goneAt.IsZero() && goneAt.After(exitAt) {
			t.Errorf("routes withdrawn %v after the process exited", goneAt.Sub(exitAt))
		}
	})
}

func sinceOrNever(at, from time.Time) string {
	if at.IsZero() {
		return "never"
	}
	return at.Sub(from).Round(time.Millisecond).String()
}
