package anycastlab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/birdlab"
)

// The anycast lab: one router, N anyfront nodes announcing the same VIPs,
// and a client, each in its own network namespace (see docs/lab.md):
//
//	client 203.0.113.2/24 2001:db8:113::2/64
//	   |
//	router 203.0.113.1, BIRD 2 AS 65000, ECMP over its BGP routes
//	   |-- 198.51.100.1/30 2001:db8:101::1/64 -- node n1 198.51.100.2 2001:db8:101::2, AS 65001
//	   |-- 198.51.100.5/30 2001:db8:102::1/64 -- node n2 198.51.100.6 2001:db8:102::2, AS 65001
//
// Every node has the VIPs 192.0.2.53/32 and 2001:db8:53::53/128 on its
// loopback, anyfront listening on VIP:53 with its admin API on
// http://NODE-ADDRESS:8053, and two unbound backends on its own
// 127.0.0.1:5301 and :5302.
var (
	VIP4 = netip.MustParseAddr("192.0.2.53")
	VIP6 = netip.MustParseAddr("2001:db8:53::53")

	labClient4 = netip.MustParsePrefix("203.0.113.2/24")
	labClient6 = netip.MustParsePrefix("2001:db8:113::2/64")
	labRtrCli4 = netip.MustParsePrefix("203.0.113.1/24")
	labRtrCli6 = netip.MustParsePrefix("2001:db8:113::1/64")
)

// Lab constants.
const (
	// RouterASN and NodeASN: the router's AS and the one every
	// node shares (one operator's anycast).
	RouterASN = 65000
	NodeASN   = 65001
	// WhoZone answers a TXT record naming the node and backend
	// ("n1/r2") for every name under it, so a client can tell who answered
	// a query that no cache has seen.
	WhoZone = "who.lab.test."
	// labMaxNodes: node i uses 198.51.100.(4i-3)/30 and 2001:db8:10i::/64.
	labMaxNodes = 9
	// labAdminPort is every node's admin API port on its own address.
	labAdminPort = 8053
	// labBackendPort is the first backend's port on a node's 127.0.0.1.
	labBackendPort = 5301
	// labReadyTimeout bounds the wait for every node's routes to reach
	// the router: first health rounds (rise x interval), the BGP session
	// (GoBGP retries a refused connect every 5s) and BIRD's processing.
	labReadyTimeout = 30 * time.Second
)

// Options configures a lab. Anyfront is required.
type Options struct {
	// Prefix names the namespaces (PREFIX-rtr, PREFIX-n1, ...) and veths
	// (PREFIXn1a, ...); at most 10 characters. A leftover of the same name
	// is removed first.
	Prefix string
	// Anyfront and Anyfrontctl are the binaries' paths.
	Anyfront, Anyfrontctl string
	// Nodes is how many anyfront nodes (default 2, at most 9).
	Nodes int
	// NoClient leaves out the client namespace.
	NoClient bool
	// HealthCheck is the pools' healthcheck as a YAML flow map; default
	// interval 1s, timeout 500ms, rise 2, fall 2.
	HealthCheck string
	// WithdrawAfter and DrainGrace go to the nodes' bgp section
	// (defaults 2s and 30s, anyfront's).
	WithdrawAfter, DrainGrace time.Duration
	// Dir holds configs, tokens and logs (default: a new temp dir,
	// removed by Close).
	Dir string
	// Logf, when set, reports progress.
	Logf func(format string, args ...any)
}

// DefaultHealthCheck is the nodes' health check unless
// Options.HealthCheck says otherwise.
const DefaultHealthCheck = `{qname: "health.anyfront.test.", qtype: A, interval: 1s, timeout: 500ms, rise: 2, fall: 2}`

// Lab is a running anycast lab. Close tears it down.
type Lab struct {
	Router *testlab.Netns
	Client *testlab.Netns // nil with NoClient
	Bird   *birdlab.Bird
	Nodes  []*Node
	// Dir holds every node's config, token and log.
	Dir  string
	opts Options

	ownDir  bool
	closers []func() // in start order; Close runs them backwards
}

// New builds the lab and returns once BIRD has both VIPs from every
// node. On error everything started is torn down.
func New(o Options) (l *Lab, err error) {
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Nodes < 1 || o.Nodes > labMaxNodes {
		return nil, fmt.Errorf("lab: %d nodes, want 1 to %d", o.Nodes, labMaxNodes)
	}
	if o.Prefix == "" || len(o.Prefix) > 10 {
		return nil, fmt.Errorf("lab: prefix %q must have 1 to 10 characters", o.Prefix)
	}
	if o.Anyfront == "" {
		return nil, errors.New("lab: the anyfront binary is required")
	}
	if o.HealthCheck == "" {
		o.HealthCheck = DefaultHealthCheck
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	for _, b := range []string{"ip", "bird", "birdc", "unbound", "unbound-control"} {
		if _, err := testlab.LookBinary(b); err != nil {
			return nil, err
		}
	}
	l = &Lab{Dir: o.Dir, opts: o}
	if l.Dir == "" {
		if l.Dir, err = os.MkdirTemp("", "anyfront-lab-"); err != nil {
			return nil, err
		}
		l.ownDir = true
	}
	defer func() {
		if err != nil {
			l.Close()
			l = nil
		}
	}()
	if err := l.build(); err != nil {
		return l, err
	}
	return l, l.WaitRoutes(labReadyTimeout)
}

// Start builds a lab for a test, named after it (LabPrefix), fails the
// test when it cannot, and tears it down when the test ends, pass or fail,
// with the nodes' and BIRD's logs when it failed.
func Start(t testing.TB, o Options) *Lab {
	t.Helper()
	testlab.SkipShort(t, "the anycast lab (namespaces, bird, unbound, anyfront)")
	testlab.RequireRoot(t)
	o.Prefix = testlab.LabPrefix(t)
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	o.Logf = t.Logf
	l, err := New(o)
	if err != nil {
		if errors.Is(err, testlab.ErrNotInstalled) {
			testlab.SkipMissing(t, err)
		}
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bird log:\n%s", l.Bird.LogTail())
			for _, n := range l.Nodes {
				t.Logf("anyfront %s log:\n%s", n.Name, n.LogTail(60))
			}
		}
		l.Close()
	})
	return l
}

// addCloser records a teardown step.
func (l *Lab) addCloser(f func()) { l.closers = append(l.closers, f) }

// Close stops every process by PID and deletes the namespaces (and with
// them the veths) in reverse order of creation. It is idempotent.
func (l *Lab) Close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
	l.closers = nil
	if l.ownDir {
		os.RemoveAll(l.Dir)
		l.ownDir = false
	}
}

func (l *Lab) newNetns(suffix string) (*testlab.Netns, error) {
	n, err := testlab.CreateNetns(l.opts.Prefix + "-" + suffix)
	if err != nil {
		return nil, err
	}
	l.addCloser(func() {
		if err := n.Close(); err != nil {
			l.opts.Logf("lab: delete namespace %s: %v", n.Name, err)
		}
	})
	return n, nil
}

func (l *Lab) newVeth(suffix string, a *testlab.Netns, aAddrs []netip.Prefix, b *testlab.Netns, bAddrs []netip.Prefix) error {
	v, err := testlab.CreateVeth(l.opts.Prefix+suffix, a, aAddrs, b, bAddrs)
	if err != nil {
		return err
	}
	l.addCloser(func() { v.Close() })
	return nil
}

// labNodeNet returns node i's (1-based) addresses: the router's side and
// the node's side of their link.
func labNodeNet(i int) (rtr4, node4, rtr6, node6 netip.Prefix) {
	base := 4*(i-1) + 1
	rtr4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(base)}), 30)
	node4 = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(base + 1)}), 30)
	rtr6 = netip.MustParsePrefix(fmt.Sprintf("2001:db8:10%d::1/64", i))
	node6 = netip.MustParsePrefix(fmt.Sprintf("2001:db8:10%d::2/64", i))
	return
}

func (l *Lab) build() error {
	o := l.opts
	var err error
	if l.Router, err = l.newNetns("rtr"); err != nil {
		return err
	}
	// Forward between the links, and hash flows over the ECMP paths by
	// ports too (policy 1): one client then reaches every node.
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv4.fib_multipath_hash_policy", "1"},
		{"net.ipv6.fib_multipath_hash_policy", "1"},
	} {
		if err := l.Router.Sysctl(kv[0], kv[1]); err != nil {
			return err
		}
	}
	if !o.NoClient {
		if l.Client, err = l.newNetns("cli"); err != nil {
			return err
		}
		if err := l.newVeth("c", l.Router, []netip.Prefix{labRtrCli4, labRtrCli6}, l.Client, []netip.Prefix{labClient4, labClient6}); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"route", "add", "default", "via", labRtrCli4.Addr().String()},
			{"-6", "route", "add", "default", "via", labRtrCli6.Addr().String()},
		} {
			if _, err := l.Client.IP(args...); err != nil {
				return err
			}
		}
	}
	for i := 1; i <= o.Nodes; i++ {
		n := newNode(l, i)
		rtr4, node4, rtr6, node6 := labNodeNet(i)
		if n.NS, err = l.newNetns(n.Name); err != nil {
			return err
		}
		if err := l.newVeth(n.Name, l.Router, []netip.Prefix{rtr4, rtr6}, n.NS, []netip.Prefix{node4, node6}); err != nil {
			return err
		}
		for _, args := range [][]string{
			{"addr", "add", VIP4.String() + "/32", "dev", "lo"},
			{"addr", "add", VIP6.String() + "/128", "dev", "lo"},
			{"route", "add", "default", "via", rtr4.Addr().String()},
			{"-6", "route", "add", "default", "via", rtr6.Addr().String()},
		} {
			if _, err := n.NS.IP(args...); err != nil {
				return err
			}
		}
		l.Nodes = append(l.Nodes, n)
	}
	o.Logf("lab: namespaces and links up (%s-*)", o.Prefix)

	b, err := birdlab.New(l.Router, labBirdOptions(o.Nodes))
	if err != nil {
		return err
	}
	l.Bird = b
	l.addCloser(b.Close)
	o.Logf("lab: BIRD running in %s (pid %d)", l.Router.Name, b.PID())

	for _, n := range l.Nodes {
		if err := n.start(); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// labBirdOptions configures the router for nodes nodes: one neighbour
// per node (named after it, so birdc shows which node a route is from),
// ECMP into the kernel, graceful shutdown honoured. Its BGP identifier is
// its address towards n1.
func labBirdOptions(nodes int) birdlab.Options {
	o := birdlab.Options{ASN: RouterASN, KernelECMP: true, HonourGracefulShutdown: true}
	for i := 1; i <= nodes; i++ {
		rtr4, node4, _, _ := labNodeNet(i)
		if i == 1 {
			o.RouterID = rtr4.Addr()
		}
		o.Neighbors = append(o.Neighbors, birdlab.Neighbor{Name: fmt.Sprintf("n%d", i), Address: node4.Addr(), ASN: NodeASN})
	}
	return o
}

// Node returns the node named name ("n1"), or nil.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}
