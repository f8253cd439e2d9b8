package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"

	"github.com/anyfront/anyfront/internal/testlab"
)

// metricName matches an anyfront metric in PromQL or in docs.
var metricName = regexp.MustCompile(`\banyfront_[a-z0-9_]+\b`)

// TestFleetQueriesExist starts a node with backends, a cache and a BGP
// section, and checks that every anyfront_ metric the Grafana dashboard and
// the alert rules query is in its /metrics, and that every anyfront_ metric
// it exports is documented in docs/metrics.md. XDP metrics need an attached
// program: a subtest checks them in the XDP lab when running as root.
func TestFleetQueriesExist(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	queried := queriedMetrics(t)
	if len(queried) < 10 {
		t.Fatalf("found only %d metrics in the dashboard and rules: %v", len(queried), queried)
	}
	t.Logf("the dashboard and rules query %d metrics: %s", len(queried), strings.Join(queried, " "))
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range metricName.FindAllString(string(doc), -1) {
		documented[m] = true
	}

	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	peerPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// A BGP peer on loopback that never answers: the session stays down
	// and the prefix withdrawn, which is enough for the series to exist.
	body := pools(r1, r2) + "    cache: {size: 1000}\n" + fmt.Sprintf(`bgp:
  asn: 65001
  router_id: "198.51.100.2"
  peers: [{address: "127.0.0.1", asn: 65000, port: %d}]
  announce: [{prefix: "192.0.2.53/32", pools: [default], min_healthy: 1}]
`, peerPort)
	n := startNode(t, body)
	n.waitFor("both backends checked up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Checked && b["r1"].Health == "up" && b["r2"].Checked && b["r2"].Health == "up"
	})
	// Answers, cache hits and the latency histogram exist once queries
	// have gone through.
	c := &dns.Client{Timeout: 2 * time.Second}
	for i := range 4 {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("m%d.%s", i%2, testlab.RandZone), dns.TypeA)
		if r, _, err := c.Exchange(m, n.dns); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}

	exported := scrapeNames(t, n.admin+"/metrics")
	var xdp []string
	for _, m := range queried {
		if strings.HasPrefix(m, "anyfront_xdp_") {
			xdp = append(xdp, m)
			continue
		}
		if !exported[m] {
			t.Errorf("%s is queried by the dashboard or the alert rules but not exported by a running node", m)
		}
	}
	for name := range exported {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if strings.HasPrefix(name, "anyfront_") && !documented[name] && !documented[base] {
			t.Errorf("%s is exported but not documented in docs/metrics.md", name)
		}
	}

	t.Run("XDP metrics exist with XDP attached", func(t *testing.T) {
		testlab.RequireRoot(t)
		if len(xdp) == 0 {
			t.Skip("the dashboard and rules query no XDP metric")
		}
		xn := startXDPNode(t, "generic")
		text, code := xn.get("/metrics")
		if code != 200 {
			t.Fatalf("/metrics: %d", code)
		}
		names := namesIn(text)
		for _, m := range xdp {
			if !names[m] {
				t.Errorf("%s is queried by the dashboard or the alert rules but not exported with XDP attached", m)
			}
		}
		for name := range names {
			if strings.HasPrefix(name, "anyfront_xdp_") && !documented[name] {
				t.Errorf("%s is exported but not documented in docs/metrics.md", name)
			}
		}
	})
}

// queriedMetrics returns every anyfront_ metric in the Grafana dashboard's
// queries (panel targets, variables, annotations) and in the alert rules.
func queriedMetrics(t *testing.T) []string {
	t.Helper()
	var exprs []string
	raw, err := os.ReadFile("../deploy/grafana/anyfront.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("deploy/grafana/anyfront.json: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(dash)

	raw, err = os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatalf("deploy/prometheus/alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("alerts.yml: a rule without alert name or expr: %+v", r)
			}
			exprs = append(exprs, r.Expr)
		}
	}
	var out []string
	for _, e := range exprs {
		out = append(out, metricName.FindAllString(e, -1)...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// scrapeNames returns the sample names in a /metrics page.
func scrapeNames(t *testing.T, url string) map[string]bool {
	t.Helper()
	resp, err := readGet(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s: %d %v", url, resp.StatusCode, err)
	}
	return namesIn(string(body))
}

// namesIn reads the sample names of Prometheus text format.
func namesIn(text string) map[string]bool {
	names := map[string]bool{}
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
