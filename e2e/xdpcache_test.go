package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestXDPAnswerCache runs the built anyfront with the XDP answer cache on a
// veth (generic mode) and asks from another namespace with dig, kdig and
// dnsperf: hot answers come back from XDP (counted `answered`, while the
// only backend is frozen), with TTLs that go down, and a purged name is
// never answered by XDP again until the proxy has it afresh.
func TestXDPAnswerCache(t *testing.T) {
	testlab.RequireRoot(t)
	for _, b := range []string{"dig", "kdig", "dnsperf"} {
		testlab.RequireBinary(t, b)
	}
	n := startXDPNodeWith(t, "generic", "    cache: {size: 1000, xdp_entries: 100}\n")
	client := n.lab.Netns(n.lab.Client)
	run := func(name string, args ...string) string {
		t.Helper()
		cmd, err := client.Command(name, args...)
		if err != nil {
			t.Fatal(err)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	vip4, vip6 := "@"+n.lab.VIP4.String(), "@"+n.lab.VIP6.String()
	// dig sends a cookie unless told not to; a cookie is the client's
	// own, so such queries always go to the proxy.
	dig := func(args ...string) string {
		return run("dig", append([]string{"+nocookie", "+tries=1", "+time=2", "-b", xdpClient4.String()}, args...)...)
	}
	kdig := func(args ...string) string {
		return run("kdig", append([]string{"+retry=0", "+timeout=2"}, args...)...)
	}
	answered := func() float64 { return n.xdpPackets()["answered"] }

	// Make the names hot through the proxy, then wait for a publish round.
	for i := 0; i < 3; i++ {
		dig(vip4, "www."+testlab.DemoZone, "A")
		kdig(vip6, testlab.DemoZone, "AAAA")
		kdig(vip4, "nx."+testlab.DemoZone, "A")
		kdig(vip4, "www."+testlab.DemoZone, "A") // as dnsperf asks: no EDNS
	}
	n.waitFor("a query answered by XDP", 5*time.Second, func() bool {
		before := answered()
		dig(vip4, "www."+testlab.DemoZone, "A")
		return answered() > before
	})

	// From here on the backend is frozen: whatever is answered, the
	// cache answered, and the counter says XDP did.
	if err := n.backend.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.backend.Cont() })

	t.Run("dig and kdig get correct answers from XDP", func(t *testing.T) {
		for _, c := range []struct {
			what string
			ask  func() string
			want []string
		}{
			{"dig, mixed case", func() string { return dig(vip4, "wWw."+strings.ToUpper(testlab.DemoZone), "A") },
				[]string{"192.0.2.11", "wWw.DEMO.TEST.", "status: NOERROR"}},
			{"kdig over IPv6", func() string { return kdig(vip6, testlab.DemoZone, "AAAA") },
				[]string{"status: NOERROR", "2001:db8::10"}},
			{"kdig, NXDOMAIN with its SOA", func() string { return kdig(vip4, "nx."+testlab.DemoZone, "A") },
				[]string{"status: NXDOMAIN", "SOA"}},
		} {
			before := answered()
			out := c.ask()
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("%s: no %q in\n%s", c.what, w, out)
				}
			}
			if d := answered() - before; d != 1 {
				t.Errorf("%s: answered rose by %v", c.what, d)
			}
		}
	})

	t.Run("TTLs go down", func(t *testing.T) {
		ttl := func() int {
			out := dig("+noall", "+answer", vip4, "www."+testlab.DemoZone, "A")
			f := strings.Fields(out)
			if len(f) < 5 {
				t.Fatalf("dig +answer: %q", out)
			}
			v, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("TTL in %q: %v", out, err)
			}
			return v
		}
		first := ttl()
		time.Sleep(2500 * time.Millisecond)
		if second := ttl(); second >= first || second < first-4 {
			t.Errorf("TTL %d, then %d 2.5s later", first, second)
		}
	})

	t.Run("dnsperf: every query answered, by XDP", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "names")
		if err := os.WriteFile(data, []byte("www."+testlab.DemoZone+" A\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		// A first run makes the name hot again (the proxy's cache
		// answers it until the next round publishes it).
		run("dnsperf", "-s", n.lab.VIP4.String(), "-d", data, "-l", "1", "-Q", "1000", "-t", "1")
		time.Sleep(1200 * time.Millisecond)
		before := answered()
		out := run("dnsperf", "-s", n.lab.VIP4.String(), "-d", data, "-l", "3", "-Q", "2000", "-t", "1")
		res := testlab.ParseDnsperf(out)
		if res.Sent < 3000 || res.Lost != 0 || res.Completed != res.Sent || res.Rcodes["NOERROR"] != res.Sent {
			t.Fatalf("dnsperf: sent %d, completed %d, lost %d\n%s", res.Sent, res.Completed, res.Lost, out)
		}
		if d := answered() - before; int(d) != res.Completed {
			t.Errorf("XDP answered %v of dnsperf's %d queries (the backend is frozen)", d, res.Completed)
		}
	})

	t.Run("a purged name is not answered by XDP", func(t *testing.T) {
		if err := n.backend.Cont(); err != nil {
			t.Fatal(err)
		}
		n.waitFor("the backend up again", 10*time.Second, func() bool {
			body, code := n.get("/api/v1/backends")
			var list []backendView
			return code == 200 && json.Unmarshal([]byte(body), &list) == nil && len(list) == 1 && list[0].Health == "up"
		})
		req, _ := http.NewRequest(http.MethodDelete, fmt.Sprintf("http://127.0.0.1:%d/api/v1/cache?name=www.%s", xdpAdminPort, testlab.DemoZone), nil)
		req.Header.Set("Authorization", "Bearer xdp-e2e-secret")
		resp, err := n.admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("purge: %s", resp.Status)
		}
		before := answered()
		out := dig(vip4, "www."+testlab.DemoZone, "A")
		if !regexp.MustCompile(`status: NOERROR`).MatchString(out) {
			t.Errorf("after the purge:\n%s", out)
		}
		if d := answered() - before; d != 0 {
			t.Errorf("XDP answered a purged name (%v)", d)
		}
	})
}
