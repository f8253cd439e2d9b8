package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/birdlab"
	"github.com/anyfront/anyfront/state"
)

// TCP-MD5 and GTSM against a real BIRD 2: the options are only worth
// something if a router that insists on them peers with us, and one that
// disagrees never does. Root only: each lab is a namespace, a veth and a
// BIRD. The GTSM tests are in bird_gtsm_test.go.

// sessionWait bounds a session coming up or a rejected one being retried:
// after a peer is (re)configured GoBGP dials within 1-2 s, a dial whose SYNs
// are dropped times out after 4 s (connect retry less one), and a session
// BIRD closed waits out the 5 s idle hold. Twice that for a loaded machine.
const sessionWait = 30 * time.Second

// rejectedAttempts is how many dropped segments of one kind a lab waits
// for before it calls a session rejected: a GoBGP dial sends its SYN at 0,
// 1 and 3 s and gives up at 4 s, so 4 drops span two dials, not one stray
// packet.
const rejectedAttempts = 4

// secNet is one lab's veth: BIRD's end and ours, a /30 of
// 203.0.113.64/28 each, so that the labs run beside bird_test.go's
// 198.51.100.0/24 and internal/testlab's 203.0.113.0/30 (packages test in
// parallel, and their veths' root ends share one routing table), and no
// lab gets segments still in flight from a previous one's connections.
type secNet struct{ bird, ours netip.Prefix }

func secLabNet(i int) secNet {
	host := func(n int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(64 + 4*i + n)}), 30)
	}
	return secNet{bird: host(1), ours: host(2)}
}

// router is the lab BIRD with one neighbour, us, with n's options.
func (s secNet) router(n birdlab.Neighbor) birdlab.Options {
	n.Name, n.Address, n.ASN = "anyfront", s.ours.Addr(), 65001
	return birdlab.Options{RouterID: s.bird.Addr(), ASN: 65000, Neighbors: []birdlab.Neighbor{n}}
}

// config is anyfront's config peering with BIRD, with peerOpts (YAML
// flow-map entries) added to the peer.
func (s secNet) config(peerOpts string) string {
	if peerOpts != "" {
		peerOpts = ", " + peerOpts
	}
	return fmt.Sprintf(`
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
bgp:
  asn: 65001
  router_id: %s
  peers: [{address: %s, asn: 65000, hold_time: 9s%s}]
  withdraw_after: 1s
  announce:
    - {prefix: 192.0.2.53/32, pools: [default], min_healthy: 1}
`, s.ours.Addr(), s.bird.Addr(), peerOpts)
}

// secLab is BIRD in a namespace and a Controller in the test process,
// peered over a veth, with the session options under test changeable on
// both sides.
type secLab struct {
	t      *testing.T
	lan    secNet
	ns     *testlab.Netns
	bird   *birdlab.Bird
	router birdlab.Options
	c      *Controller
}

// newSecLab starts BIRD with router and the controller with yml, the
// backend up, and stops both when the test ends.
func newSecLab(t *testing.T, lan secNet, router birdlab.Options, yml string) *secLab {
	t.Helper()
	testlab.RequireRoot(t)
	for _, b := range []string{"bird", "birdc", "ip", "cat"} {
		testlab.RequireBinary(t, b)
	}
	l := &secLab{t: t, lan: lan, ns: testlab.NewNetns(t, "rtr"), router: router}
	testlab.NewVeth(t, "v", nil, []netip.Prefix{lan.ours}, l.ns, []netip.Prefix{lan.bird})
	l.bird = birdlab.Start(t, l.ns, router)

	cfg := parseConfig(t, yml)
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	store.SetServing(true)
	if _, err := store.SetHealth("r1", state.HealthUp, "test"); err != nil {
		t.Fatal(err)
	}
	if l.c, err = New(cfg.BGP, Deps{Store: store, Log: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- l.c.Run(ctx) }()
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := l.bird.Birdc("show", "protocols", "all", "anyfront")
			t.Logf("BIRD's view of the session:\n%s", strings.TrimSpace(out))
			if ss, err := exec.Command("ss", "-tnoie", "dst", lan.bird.Addr().String()).CombinedOutput(); err == nil {
				t.Logf("our sockets to BIRD (ss -tnoie):\n%s", ss)
			}
		}
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return l
}

// session reports both ends' view: BIRD's BGP state ("Established",
// "OpenConfirm", "Passive", ...), the controller's peer state, and whether
// BIRD holds our route.
func (l *secLab) session() (bird, ours string, route bool) {
	l.t.Helper()
	bird, err := l.bird.BGPState("anyfront")
	if err != nil {
		l.t.Fatal(err)
	}
	if ps := l.c.status().Peers; len(ps) == 1 {
		ours = ps[0].State
	}
	rs, err := l.bird.Routes()
	if err != nil {
		l.t.Fatal(err)
	}
	for _, r := range rs {
		if r.Prefix.String() == v4 && r.Primary && r.Protocol == "anyfront" &&
			len(r.NextHops) == 1 && r.NextHops[0] == l.lan.ours.Addr() {
			route = true
		}
	}
	return bird, ours, route
}

// waitEstablished waits until both ends see the session established and
// BIRD has received our route over it.
func (l *secLab) waitEstablished(what string) {
	l.t.Helper()
	eventually(l.t, sessionWait, func() string {
		bird, ours, route := l.session()
		if bird == "Established" && ours == "established" && route {
			return ""
		}
		return fmt.Sprintf("%s: BIRD %q, anyfront %q, route at BIRD %v", what, bird, ours, route)
	})
}

// waitRejected waits until the session is down (BIRD no longer has our
// route), then until proof() says the kernel or the protocol states show
// why, failing the moment BIRD sees the session established or holds our
// route meanwhile and, when ours is set, the moment anyfront sees it
// established. proof is what makes this a wait for a condition rather than
// a sleep: it shows GoBGP kept trying and was refused, not that it had no
// time to succeed.
func (l *secLab) waitRejected(what string, ours bool, proof func() func() string) {
	l.t.Helper()
	eventually(l.t, sessionWait, func() string {
		bird, st, route := l.session()
		if bird != "Established" && (!ours || st != "established") && !route {
			return ""
		}
		return fmt.Sprintf("%s: session still up: BIRD %q, anyfront %q, route at BIRD %v", what, bird, st, route)
	})
	done := proof()
	eventually(l.t, sessionWait, func() string {
		bird, st, route := l.session()
		if bird == "Established" || ours && st == "established" || route {
			l.t.Fatalf("%s: the session came up: BIRD %q, anyfront %q, route at BIRD %v", what, bird, st, route)
		}
		if msg := done(); msg != "" {
			return fmt.Sprintf("%s: %s (BIRD %q, anyfront %q)", what, msg, bird, st)
		}
		return ""
	})
}

// dropped is a waitRejected proof: the TcpExt counter of ns (nil: ours)
// rose by rejectedAttempts from when the proof started.
func (l *secLab) dropped(ns *testlab.Netns, counter string) func() func() string {
	return func() func() string {
		base := l.counter(ns, counter)
		return func() string {
			if n := l.counter(ns, counter); n < base+rejectedAttempts {
				return fmt.Sprintf("%s rose by %d, want %d", counter, n-base, rejectedAttempts)
			}
			return ""
		}
	}
}

func (l *secLab) counter(ns *testlab.Netns, name string) uint64 {
	l.t.Helper()
	m, err := birdlab.NetstatCounters(ns)
	if err != nil {
		l.t.Fatal(err)
	}
	n, ok := m["TcpExt."+name]
	if !ok {
		l.t.Fatalf("the kernel has no TcpExt.%s counter", name)
	}
	return n
}

// reload hands the controller yml's bgp section, as SIGHUP does.
func (l *secLab) reload(yml string) {
	l.t.Helper()
	if err := l.c.Reload(parseConfig(l.t, yml).BGP); err != nil {
		l.t.Fatal(err)
	}
}

// reconfigureBird changes our neighbour's options at BIRD (birdc configure).
func (l *secLab) reconfigureBird(edit func(*birdlab.Neighbor)) {
	l.t.Helper()
	edit(&l.router.Neighbors[0])
	if err := l.bird.Reconfigure(l.router); err != nil {
		l.t.Fatal(err)
	}
}

func writeSecret(t *testing.T, path, secret string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestBirdTCPMD5 peers with a BIRD that requires a TCP-MD5 password
// (RFC 2385), then makes each side wrong and right again in turn.
func TestBirdTCPMD5(t *testing.T) {
	const secret, wrong = "anycast-lab-secret", "not-the-secret"
	pwFile := filepath.Join(t.TempDir(), "bgp.password")
	writeSecret(t, pwFile, secret)
	lan := secLabNet(0)
	withPassword := lan.config("password_file: " + pwFile)
	l := newSecLab(t, lan, lan.router(birdlab.Neighbor{Password: secret}), withPassword)
	if !strings.Contains(l.bird.ConfigText, `password "`+secret+`";`) {
		t.Fatalf("BIRD runs without the password:\n%s", l.bird.ConfigText)
	}
	// Every wrong key is dropped by BIRD's kernel before BIRD sees a byte.
	badKey := l.dropped(l.ns, "TCPMD5Failure")

	t.Run("same password on both sides: established, route announced", func(t *testing.T) {
		l.t = t
		l.waitEstablished("matching passwords")
	})
	t.Run("wrong password at anyfront (file changed, reloaded): never established", func(t *testing.T) {
		l.t = t
		writeSecret(t, pwFile, wrong)
		l.reload(withPassword) // the same config: the file is read again
		l.waitRejected("anyfront signs with the wrong key", true, badKey)
	})
	t.Run("right password again at anyfront: established", func(t *testing.T) {
		l.t = t
		writeSecret(t, pwFile, secret)
		l.reload(withPassword)
		l.waitEstablished("password restored at anyfront")
	})
	t.Run("wrong password at BIRD: the session drops and never comes back", func(t *testing.T) {
		l.t = t
		l.reconfigureBird(func(n *birdlab.Neighbor) { n.Password = wrong })
		l.waitRejected("BIRD expects another key", true, badKey)
	})
	t.Run("right password again at BIRD: established", func(t *testing.T) {
		l.t = t
		l.reconfigureBird(func(n *birdlab.Neighbor) { n.Password = secret })
		l.waitEstablished("password restored at BIRD")
	})
	t.Run("no password_file at anyfront: BIRD's kernel drops the unsigned SYNs", func(t *testing.T) {
		l.t = t
		l.reload(lan.config(""))
		l.waitRejected("anyfront sends no signature", true, l.dropped(l.ns, "TCPMD5NotFound"))
	})
	t.Run("the password is not in the status", func(t *testing.T) {
		l.t = t
		if s := fmt.Sprintf("%+v", l.c.status()); strings.Contains(s, secret) || strings.Contains(s, wrong) {
			t.Errorf("status shows the password: %s", s)
		}
	})
}
