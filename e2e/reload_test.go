package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Operators' actions under load (issue 8): reloads, valid and not, and
// SIGTERM, while queries flow.

// writeConfig replaces the node's config file body (listen and admin kept).
func (n *node) writeConfig(body string) {
	n.t.Helper()
	old, err := os.ReadFile(n.cfgPath)
	if err != nil {
		n.t.Fatal(err)
	}
	// The first two lines are listen and admin, written by startNode.
	lines := strings.SplitN(string(old), "\n", 3)
	tmp := n.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(lines[0]+"\n"+lines[1]+"\n"+body), 0o644); err != nil {
		n.t.Fatal(err)
	}
	// Rename, so a reload never reads a half-written file.
	if err := os.Rename(tmp, n.cfgPath); err != nil {
		n.t.Fatal(err)
	}
}

// weights returns each backend's weight as the API shows it.
func (n *node) weights() map[string]int {
	n.t.Helper()
	resp, err := readGet(n.admin + "/api/v1/backends")
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct {
		Name   string `json:"name"`
		Weight int    `json:"weight"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		n.t.Fatal(err)
	}
	out := map[string]int{}
	for _, b := range list {
		out[b.Name] = b.Weight
	}
	return out
}

// reloadBody is a valid pool config; weight tells configs apart through
// the API.
func reloadBody(weight int, r1, r2 *testlab.Unbound) string {
	return fmt.Sprintf(`pools:
  default:
    policy: wrandom
    backends:
      - {name: r1, address: %q, weight: %d}
      - {name: r2, address: %q, weight: 1}
    healthcheck: {qname: "health.anyfront.test.", qtype: SOA, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
`, r1.Addr, weight, r2.Addr)
}

// invalidBodies are configs a reload must refuse, each a different kind of
// mistake.
var invalidBodies = []string{
	"pools:\n  default:\n    backends: [{name: r1, address: \"127.0.0.1:1\"\n", // YAML syntax
	"pools:\n  default:\n    policy: fastest\n    backends: [{name: r1, address: \"127.0.0.1:1\"}]\n",
	"pools:\n  default:\n    backends: [{name: r1, address: \"not-an-address\"}]\n",
	"pools:\n  default:\n    backends: [{name: r1, address: \"127.0.0.1:1\"}]\nrules:\n  - {match: {qtype: [ANY]}, action: {pool: nowhere}}\n",
	"pools: {}\n",
}

// TestReloadUnderLoad reloads 100 times (issue 8), half with invalid configs, half over
// SIGHUP and half over the API, during a dnsperf run: nothing may be lost,
// invalid configs are refused with FILE:LINE errors and the config before
// them keeps serving.
func TestReloadUnderLoad(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	n := startNode(t, reloadBody(1, r1, r2))
	n.waitFor("both backends checked up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Health == "up" && b["r2"].Health == "up"
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wait, err := testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{
		Server: n.dns, Duration: 20 * time.Second, QPS: 2000, Clients: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // load reaches steady state first
	errLine := regexp.MustCompile(`^` + regexp.QuoteMeta(n.cfgPath) + `:[1-9][0-9]*: \S`)
	outcomes := func() (int, int) {
		l := n.logs.String()
		return strings.Count(l, "config reloaded"), strings.Count(l, "reload rejected")
	}
	current := 1
	for i := 0; i < 100; i++ {
		valid := i%2 == 0
		viaAPI := i%4 < 2
		if valid {
			current = 2 + i%7
			n.writeConfig(reloadBody(current, r1, r2))
		} else {
			n.writeConfig(invalidBodies[i%len(invalidBodies)])
		}
		okBefore, badBefore := outcomes()
		if viaAPI {
			code, body := n.post("/api/v1/reload", n.token)
			switch {
			case valid && code != 200:
				t.Fatalf("reload %d (valid): %d %s", i, code, body)
			case !valid && code != 400:
				t.Fatalf("reload %d (invalid): %d %s", i, code, body)
			case !valid:
				var e struct {
					Errors []string `json:"errors"`
				}
				if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) == 0 {
					t.Fatalf("reload %d: 400 without errors: %s", i, body)
				}
				for _, line := range e.Errors {
					if !errLine.MatchString(line) {
						t.Errorf("reload %d: error not FILE:LINE: message: %q", i, line)
					}
				}
			}
		} else {
			if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			n.waitFor("the SIGHUP reload to finish", 5*time.Second, func() bool {
				ok, bad := outcomes()
				if valid {
					return ok > okBefore
				}
				return bad > badBefore
			})
		}
		if got := n.weights()["r1"]; got != current {
			t.Fatalf("after reload %d (valid %v): r1 weight %d, want %d: the running config is not the last valid one", i, valid, got, current)
		}
		time.Sleep(100 * time.Millisecond)
	}
	res, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dnsperf: sent %d completed %d lost %d rcodes %v", res.Sent, res.Completed, res.Lost, res.Rcodes)
	if res.Sent < 30000 {
		t.Errorf("dnsperf sent only %d queries", res.Sent)
	}
	if res.Lost != 0 || res.Rcodes["NOERROR"] != res.Completed {
		t.Errorf("lost %d, rcodes %v: reloads lost queries\n%s", res.Lost, res.Rcodes, res.Output)
	}
	ok, bad := outcomes()
	t.Logf("reloads applied %d, rejected %d", ok, bad)
}

// TestSIGTERMAnswersInFlight freezes the only backend so queries are in
// flight, sends SIGTERM, thaws the backend: every client must get its
// answer, and the daemon exits 0.
func TestSIGTERMAnswersInFlight(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	n := startNode(t, fmt.Sprintf(`proxy: {timeout: 5s, retries: 0}
pools:
  default:
    backends: [{name: r1, address: %q}]
    healthcheck: {qname: "health.anyfront.test.", qtype: SOA, interval: 1s, timeout: 500ms, rise: 1, fall: 30}
`, r1.Addr))
	waitServing(n)
	if err := r1.Stop(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r1.Cont() }()

	const udpClients, tcpClients = 40, 5
	var wg sync.WaitGroup
	errs := make(chan string, udpClients+tcpClients)
	for i := 0; i < udpClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("term%d.%s", i, testlab.RandZone)
			q := mkQuery(name, dns.TypeA, uint16(i+100))
			raw, _ := q.Pack()
			c, err := net.Dial("udp", n.dns)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer c.Close()
			_, _ = c.Write(raw)
			_ = c.SetReadDeadline(time.Now().Add(8 * time.Second))
			buf := make([]byte, 4096)
			k, err := c.Read(buf)
			var m dns.Msg
			if err != nil || m.Unpack(buf[:k]) != nil || m.Id != q.Id || m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
				errs <- fmt.Sprintf("UDP %s: err %v answer %v", name, err, &m)
			}
		}()
	}
	for i := 0; i < tcpClients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("termtcp%d.%s", i, testlab.RandZone)
			c := &dns.Client{Net: "tcp", Timeout: 8 * time.Second}
			r, _, err := c.Exchange(mkQuery(name, dns.TypeA, uint16(i+1)), n.dns)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				errs <- fmt.Sprintf("TCP %s: err %v answer %v", name, err, r)
			}
		}()
	}
	n.waitFor("the queries to be in flight", 5*time.Second, func() bool {
		return n.metric("anyfront_proxy_udp_inflight") >= udpClients
	})
	time.Sleep(100 * time.Millisecond) // the TCP ones have no gauge; they were sent with the UDP ones
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if err := r1.Cont(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	select {
	case err := <-n.exited:
		n.exited <- err // for startNode's cleanup
		if err != nil {
			t.Errorf("anyfront exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("anyfront still running 10s after SIGTERM")
	}
}

// TestSoak (make soak; not in CI) offers half of anyfront's measured max
// q/s for $ANYFRONT_SOAK (a duration) while the two backends are killed and
// restarted in turn every 30 s. RSS and goroutines must stay flat, and
// losses stay within what the retry budget cannot save.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("ANYFRONT_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("set ANYFRONT_SOAK=10m (make soak) to run the soak test")
	}
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	n := startNode(t, "proxy: {timeout: 500ms, retries: 1}\n"+pools(r1, r2))
	n.waitFor("both backends checked up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Health == "up" && b["r2"].Health == "up"
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	wait, err := testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{Server: n.dns, Duration: 5 * time.Second, Clients: 8})
	if err != nil {
		t.Fatal(err)
	}
	maxRes, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	qps := int(maxRes.QPS / 2)
	t.Logf("max %.0f q/s; soaking at %d q/s for %v", maxRes.QPS, qps, d)

	wait, err = testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{Server: n.dns, Duration: d, QPS: qps, Clients: 8, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	type sample struct {
		at                    time.Duration
		rss, heap, goroutines float64
	}
	var samples []sample
	start := time.Now()
	next := 30 * time.Second
	backends := []*testlab.Unbound{r1, r2}
	restarts := 0
	for time.Since(start) < d {
		time.Sleep(5 * time.Second)
		m := n.metrics()
		samples = append(samples, sample{time.Since(start).Round(time.Second), m["anyfront_process_resident_memory_bytes"], m["go_memstats_heap_inuse_bytes"], m["go_goroutines"]})
		if time.Since(start) >= next && time.Since(start) < d-10*time.Second {
			u := backends[restarts%2]
			u.Kill()
			if err := u.Restart(); err != nil {
				t.Fatalf("restart: %v", err)
			}
			restarts++
			next += 30 * time.Second
		}
	}
	res, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range samples {
		t.Logf("%6v rss %6.1f MiB heap in use %6.1f MiB goroutines %v", s.at, s.rss/(1<<20), s.heap/(1<<20), s.goroutines)
	}
	t.Logf("dnsperf: sent %d completed %d lost %d rcodes %v; %d backend restarts", res.Sent, res.Completed, res.Lost, res.Rcodes, restarts)
	if len(samples) < 4 {
		t.Fatal("too few samples")
	}
	// Compare the last quarter with the first sample after warm-up: the
	// heap grows towards GOGC's target (about twice the live heap) during
	// the first minutes, which is not a leak. Flat means RSS within 25% +
	// 8 MiB and goroutines within 20.
	warm := min(2*time.Minute, d/3)
	ref := samples[len(samples)-1]
	for _, s := range samples {
		if s.at >= warm {
			ref = s
			break
		}
	}
	t.Logf("reference sample at %v: rss %.1f MiB goroutines %v", ref.at, ref.rss/(1<<20), ref.goroutines)
	for _, s := range samples[len(samples)*3/4:] {
		if s.rss > ref.rss*1.25+8<<20 {
			t.Errorf("RSS grew from %.1f MiB to %.1f MiB", ref.rss/(1<<20), s.rss/(1<<20))
		}
		if s.goroutines > ref.goroutines+20 {
			t.Errorf("goroutines grew from %v to %v", ref.goroutines, s.goroutines)
		}
	}
	// A killed backend refuses at once (ICMP), so the retry budget should
	// save almost everything: allow 0.1%.
	if float64(res.Lost) > float64(res.Sent)*0.001 {
		t.Errorf("lost %d of %d", res.Lost, res.Sent)
	}
}
