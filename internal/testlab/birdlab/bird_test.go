package birdlab

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

func TestParseBirdRoutes(t *testing.T) {
	out, err := os.ReadFile("testdata/bird-show-route-all.txt") // birdc output of BIRD 2.0.12
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseRoutes(string(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"192.0.2.53/32 via [198.51.100.2] from anyfront as-path [65001 65001] med 7 local-pref 100 communities [65535:0 65001:53 65001:1:2]",
		"192.0.2.53/32 via [198.51.100.3] from node2 as-path [65002] med - local-pref 100 communities []",
		"2001:db8:53::53/128 via [2001:db8:100::2] from anyfront as-path [65001] med - local-pref 100 communities []",
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d routes: %v", len(rs), rs)
	}
	for i, r := range rs {
		if r.String() != want[i] {
			t.Errorf("route %d:\n got %s\nwant %s", i, r, want[i])
		}
	}
	if !rs[0].Primary || rs[1].Primary || rs[0].Table != "master4" || rs[2].Table != "master6" {
		t.Errorf("primary/table: %+v", rs)
	}
	if rs[0].Since != "2026-11-23 06:02:14.605" || rs[2].From != netip.MustParseAddr("198.51.100.2") {
		t.Errorf("since/from: %q %v", rs[0].Since, rs[2].From)
	}
	if !rs[0].HasCommunity("65535:0") || rs[1].HasCommunity("65535:0") {
		t.Error("HasCommunity")
	}
	if _, err := ParseRoutes("Table master4:\nnonsense\n"); err == nil {
		t.Error("garbage parsed without error")
	}
}

func TestBirdConfigRefusesIncompleteOptions(t *testing.T) {
	ok := Options{RouterID: netip.MustParseAddr("198.51.100.1"), ASN: 65000,
		Neighbors: []Neighbor{{Name: "n1", Address: netip.MustParseAddr("198.51.100.2"), ASN: 65001}}}
	conf, err := Config(ok)
	if err != nil || !strings.Contains(conf, "neighbor 198.51.100.2 as 65001;") {
		t.Fatalf("valid options: %v\n%s", err, conf)
	}
	lab := ok
	lab.KernelECMP, lab.HonourGracefulShutdown = true, true
	conf, _ = Config(lab)
	for _, s := range []string{"merge paths on;", "(65535, 0) ~ bgp_community", "import filter graceful_shutdown;"} {
		if !strings.Contains(conf, s) {
			t.Errorf("lab config lacks %q:\n%s", s, conf)
		}
	}
	for name, o := range map[string]Options{
		"no router id":   {ASN: 1, Neighbors: ok.Neighbors},
		"no neighbours":  {RouterID: ok.RouterID, ASN: 1},
		"bad name":       {RouterID: ok.RouterID, ASN: 1, Neighbors: []Neighbor{{Name: "a-b", Address: ok.RouterID, ASN: 1}}},
		"neighbour asn":  {RouterID: ok.RouterID, ASN: 1, Neighbors: []Neighbor{{Name: "a", Address: ok.RouterID}}},
		"IPv6 router id": {RouterID: netip.MustParseAddr("2001:db8::1"), ASN: 1, Neighbors: ok.Neighbors},
	} {
		if _, err := Config(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestNamespaceVethAndBird starts BIRD in a namespace behind a veth and
// checks that everything is gone after the subtest, as after a failure.
func TestNamespaceVethAndBird(t *testing.T) {
	testlab.RequireRoot(t)
	for _, b := range []string{"ip", "bird", "birdc"} {
		testlab.RequireBinary(t, b)
	}
	var nsName, link string
	var bird *testlab.Proc
	t.Run("lab", func(t *testing.T) {
		ns := testlab.NewNetns(t, "r")
		// A /30 no other lab holds in the root namespace: the lossy farm
		// (faultlab) takes /28s of 203.0.113.0/24 there, from the bottom,
		// while other packages' tests run beside this one.
		var v *testlab.Veth
		var sub [4]byte
		for k := 63; k >= 0 && v == nil; k-- {
			sub = [4]byte{203, 0, 113, byte(4 * k)}
			at := func(host byte, bits int) netip.Prefix {
				a := sub
				a[3] += host
				return netip.PrefixFrom(netip.AddrFrom4(a), bits)
			}
			var err error
			v, err = testlab.CreateVeth(testlab.LabPrefix(t)+"v", nil, []netip.Prefix{at(2, 30)},
				ns, []netip.Prefix{at(1, 30), netip.MustParsePrefix("2001:db8:113::1/64")})
			if err != nil && !strings.Contains(err.Error(), "already configured") {
				t.Fatal(err)
			}
		}
		if v == nil {
			t.Fatal("every /30 of 203.0.113.0/24 is in use in the root namespace")
		}
		t.Cleanup(func() { v.Close() })
		nsName, link = ns.Name, v.A
		ours, theirs := netip.AddrFrom4([4]byte{sub[0], sub[1], sub[2], sub[3] + 2}), netip.AddrFrom4([4]byte{sub[0], sub[1], sub[2], sub[3] + 1})
		// The lab router's options, so real BIRD checks the syntax.
		b := Start(t, ns, Options{RouterID: theirs, ASN: 65000,
			KernelECMP: true, HonourGracefulShutdown: true,
			Neighbors: []Neighbor{{Name: "peer", Address: ours, ASN: 65001}}})
		bird = b.proc
		if st, err := b.ProtocolState("peer"); err != nil || !strings.HasPrefix(st, "start") {
			t.Errorf("protocol state %q, %v (want start: nobody connects)", st, err)
		}
		if rs, err := b.Routes(); err != nil || len(rs) != 0 {
			t.Errorf("routes %v, %v", rs, err)
		}
		// The namespace's end has both addresses and the link is up.
		out, err := ns.IP("-o", "addr", "show", "dev", v.B)
		if err != nil || !strings.Contains(out, theirs.String()+"/30") || !strings.Contains(out, "2001:db8:113::1/64") {
			t.Errorf("addresses in the namespace: %s %v", out, err)
		}
		if v2, err := testlab.CreateVeth(testlab.LabPrefix(t)+"x", nil, []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{sub[0], sub[1], sub[2], sub[3] + 3}), 30)}, nil, nil); err == nil {
			v2.Close()
			t.Error("a second veth on a subnet already in the root namespace was allowed")
		}
	})
	if _, err := os.Stat("/run/netns/" + nsName); err == nil {
		t.Errorf("namespace %s left behind", nsName)
	}
	var host *testlab.Netns // nil: the test's own namespace
	if _, err := host.IP("link", "show", link); err == nil {
		t.Errorf("link %s left behind", link)
	}
	if bird == nil {
		return // the lab did not start: its failure says why
	}
	if !bird.Exited() {
		t.Errorf("bird (pid %d) still running", bird.PID())
	}
}

func TestParseImportStats(t *testing.T) {
	out, err := os.ReadFile("testdata/bird-show-protocols-all.txt") // the channels part of birdc's output
	if err != nil {
		t.Fatal(err)
	}
	u, w, err := parseImportStats(string(out)) // summed over the ipv4 and ipv6 channels
	if err != nil || u != 10 || w != 6 {
		t.Errorf("got %d updates, %d withdraws, %v; want 10, 6", u, w, err)
	}
	if _, _, err := parseImportStats("no stats here"); err == nil {
		t.Error("no error without statistics")
	}
}

func TestBirdConfigSessionSecurity(t *testing.T) {
	n := Neighbor{Name: "n1", Address: netip.MustParseAddr("198.51.100.2"), ASN: 65001}
	base := Options{RouterID: netip.MustParseAddr("198.51.100.1"), ASN: 65000}
	for _, tc := range []struct {
		name      string
		edit      func(*Neighbor)
		want, not []string
	}{
		{"neither option: no password, no ttl security", func(*Neighbor) {},
			nil, []string{"password", "ttl security"}},
		{"password", func(n *Neighbor) { n.Password = "s3cr3t pass" },
			[]string{"\tpassword \"s3cr3t pass\";\n"}, []string{"ttl security"}},
		{"ttl security", func(n *Neighbor) { n.TTLSecurity = true },
			[]string{"\tttl security on;\n"}, []string{"password"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, nb := base, n
			tc.edit(&nb)
			o.Neighbors = []Neighbor{nb}
			conf, err := Config(o)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range tc.want {
				if !strings.Contains(conf, s) {
					t.Errorf("config lacks %q:\n%s", s, conf)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(conf, s) {
					t.Errorf("config has %q:\n%s", s, conf)
				}
			}
		})
	}
	for name, pw := range map[string]string{
		"quote":      `a"b`,
		"line break": "a\nb",
		"81 bytes":   strings.Repeat("x", 81),
	} {
		t.Run("password refused: "+name, func(t *testing.T) {
			o, nb := base, n
			nb.Password = pw
			o.Neighbors = []Neighbor{nb}
			_, err := Config(o)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestParseNetstat(t *testing.T) {
	in := "TcpExt: SyncookiesSent TCPMD5NotFound TCPMD5Failure TCPMinTTLDrop\n" +
		"TcpExt: 0 1 7 3\n" +
		"IpExt: InNoRoutes\n" +
		"IpExt: 2\n" +
		"Tcp: RtoAlgorithm MaxConn ActiveOpens\n" +
		"Tcp: 1 -1 12\n"
	m, err := parseNetstat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]uint64{"TcpExt.TCPMD5Failure": 7, "TcpExt.TCPMinTTLDrop": 3, "IpExt.InNoRoutes": 2, "Tcp.ActiveOpens": 12} {
		if m[k] != want {
			t.Errorf("%s = %d, want %d", k, m[k], want)
		}
	}
	if _, ok := m["Tcp.MaxConn"]; ok {
		t.Error("negative MaxConn parsed")
	}
	if _, err := parseNetstat([]byte("TcpExt: A B\nTcpExt: 1\n")); err == nil {
		t.Error("short value line accepted")
	}
	if _, err := NetstatCounters(nil); err != nil {
		t.Errorf("this namespace's counters: %v", err)
	}
}
