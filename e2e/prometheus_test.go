package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestPrometheus runs Debian's Prometheus against two real nodes, scraping
// with each node's read token, and (as root) a third with XDP attached in
// generic mode in the XDP lab; checks the alert rules with promtool; and
// evaluates every query of the Grafana dashboard against it: each must
// return data, and an XDP panel's a rate above zero.
func TestPrometheus(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "prometheus")
	testlab.RequireBinary(t, "promtool")

	t.Run("promtool check rules", func(t *testing.T) {
		out, err := exec.Command("promtool", "check", "rules", "../deploy/prometheus/alerts.yml").CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})

	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	deadPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	peerPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// A pool whose one backend never answers (down: SERVFAIL for names
	// routed to it), and a BGP peer that never answers (session down).
	body := func(name, site string) string {
		return fmt.Sprintf("node: {name: %s, site: %s}\n", name, site) + pools(r1, r2) + "    cache: {size: 1000}\n" +
			fmt.Sprintf(`  dead:
    backends: [{name: d1, address: "127.0.0.1:%d"}]
    healthcheck: {qname: "health.anyfront.test.", qtype: SOA, interval: 1s, timeout: 300ms, rise: 1, fall: 1}
rules:
  - {match: {qname_suffix: ["dead.test."]}, action: {pool: dead}}
bgp:
  asn: 65001
  router_id: "198.51.100.2"
  peers: [{address: "127.0.0.1", asn: 65000, port: %d}]
  announce: [{prefix: "192.0.2.53/32", pools: [default], min_healthy: 1}]
`, deadPort, peerPort)
	}
	nodes := []*node{startNode(t, body("ams1-n1", "ams1")), startNode(t, body("fra1-n1", "fra1"))}
	for _, n := range nodes {
		n.waitFor("both backends up", 10*time.Second, func() bool {
			b := n.backends()
			return b["r1"].Health == "up" && b["r2"].Health == "up"
		})
	}
	// The XDP panels' node: passed and blocklisted queries move its
	// verdict counters.
	var xn *promXDPNode
	xdpSkip := promXDPSkip()
	if xdpSkip == "" {
		xn = startPromXDPNode(t)
	}
	// An operator drain, for the drained-backends panel.
	if code, body := nodes[0].post("/api/v1/backends/r2/drain", nodes[0].token); code != 200 {
		t.Fatalf("drain r2: %d %s", code, body)
	}

	// One scrape job per node (each has its own read token), all labelled
	// job="anyfront" as the dashboard expects.
	dir := t.TempDir()
	var jobs strings.Builder
	for i, n := range nodes {
		fmt.Fprintf(&jobs, `  - job_name: anyfront-%d
    scrape_interval: 1s
    authorization: {type: Bearer, credentials_file: %q}
    static_configs: [{targets: [%q]}]
    relabel_configs: [{target_label: job, replacement: anyfront}]
`, i, n.readTokenFile, strings.TrimPrefix(n.admin, "http://"))
	}
	targets := len(nodes)
	if xn != nil {
		fmt.Fprintf(&jobs, `  - job_name: anyfront-xdp
    scrape_interval: 1s
    authorization: {type: Bearer, credentials_file: %q}
    static_configs: [{targets: [%q]}]
    relabel_configs: [{target_label: job, replacement: anyfront}]
`, xn.tokenFile, xn.target)
		targets++
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: ["+
		fmt.Sprintf("%q", mustAbs(t, "../deploy/prometheus/alerts.yml"))+"]\nscrape_configs:\n"+jobs.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	prom := fmt.Sprintf("http://127.0.0.1:%d", port)
	logs := &syncBuffer{}
	cmd := exec.Command("prometheus", "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testlab.StartCmd(cmd); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by PID
		<-exited
		if t.Failed() {
			t.Logf("prometheus logs:\n%s", logs.String())
		}
	})
	// query returns the value of each series q's instant vector has.
	query := func(q string) ([]float64, error) {
		res, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		var v struct {
			Status string `json:"status"`
			Error  string `json:"error"`
			Data   struct {
				Result []struct {
					Value [2]any `json:"value"` // [time, "value"]
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("%v: %s", err, raw)
		}
		if v.Status != "success" {
			return nil, fmt.Errorf("%s", v.Error)
		}
		out := make([]float64, 0, len(v.Data.Result))
		for _, r := range v.Data.Result {
			s, _ := r.Value[1].(string)
			f, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return nil, fmt.Errorf("value %v: %v", r.Value[1], err)
			}
			out = append(out, f)
		}
		return out, nil
	}
	nodes[0].waitFor(fmt.Sprintf("Prometheus to scrape all %d nodes", targets), 30*time.Second, func() bool {
		up, err := query(`up{job="anyfront"} == 1`)
		return err == nil && len(up) == targets
	})

	// Traffic on both nodes: answers, cache hits, and SERVFAIL from the
	// dead pool; a response-shaped packet (QR=1) is a counted drop.
	c := &dns.Client{Timeout: 2 * time.Second}
	stop := time.Now().Add(4 * time.Second)
	for i := 0; time.Now().Before(stop); i++ {
		for _, n := range nodes {
			m := new(dns.Msg)
			name := fmt.Sprintf("p%d.%s", i%5, testlab.RandZone)
			if i%10 == 0 {
				name = fmt.Sprintf("x%d.dead.test.", i)
			}
			m.SetQuestion(name, dns.TypeA)
			_, _, _ = c.Exchange(m, n.dns)
			if i%20 == 0 {
				sendResponseShaped(t, n.dns)
			}
		}
		if xn != nil {
			xn.send()
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("the site variable picks that site's node", func(t *testing.T) {
		if got, err := query(`anyfront_build_info{job="anyfront",site="ams1",node="ams1-n1"}`); err != nil || len(got) != 1 {
			t.Errorf("%d series for site ams1, %v", len(got), err)
		}
	})

	subst := strings.NewReplacer(`$__rate_interval`, "30s", `$instance`, ".*", `$site`, ".*", "${datasource}", "")
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*\w+\)$`)
	for _, e := range grafanaExprs(t) {
		q := subst.Replace(e)
		if m := labelValues.FindStringSubmatch(q); m != nil {
			q = m[1] // a variable: its series must exist
		}
		// An XDP panel's query must show the traffic: a rate above zero.
		xdp := strings.Contains(q, "anyfront_xdp_")
		ok := func(got []float64) bool {
			if !xdp {
				return len(got) > 0
			}
			return slices.ContainsFunc(got, func(v float64) bool { return v > 0 })
		}
		t.Run(e, func(t *testing.T) {
			if xdp && xn == nil {
				t.Skip("not evaluated (needs XDP attached): " + xdpSkip)
			}
			var got []float64
			var qerr error
			deadline := time.Now().Add(15 * time.Second)
			for {
				got, qerr = query(q)
				if (qerr == nil && ok(got)) || time.Now().After(deadline) {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if qerr != nil || !ok(got) {
				t.Errorf("%s: %v, %v", q, got, qerr)
			}
		})
	}
}

// grafanaExprs returns the dashboard's panel queries and its variables'
// queries.
func grafanaExprs(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../deploy/grafana/anyfront.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Type string `json:"type"`
				// A string for a datasource variable, an object for a
				// query variable.
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, v := range d.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if v.Type == "query" && json.Unmarshal(v.Query, &q) == nil {
			out = append(out, q.Query)
		}
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if tg.Expr != "" {
				out = append(out, tg.Expr)
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d queries in the dashboard", len(out))
	}
	return out
}

// sendResponseShaped sends a packet with QR=1 to addr: the proxy drops and
// counts it.
func sendResponseShaped(t *testing.T, addr string) {
	m := new(dns.Msg)
	m.SetQuestion("qr.example.", dns.TypeA)
	m.Response = true
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = conn.Write(b)
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
