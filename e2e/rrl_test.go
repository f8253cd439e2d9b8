package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// rrlDocExample returns the first YAML example under docs/config.md's
// "Response-rate limiting (RRL)" heading, so that the test runs exactly what
// the operator reads.
func rrlDocExample(t *testing.T) string {
	t.Helper()
	md, err := os.ReadFile("../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(md), "\n## Response-rate limiting (RRL)\n")
	if !ok {
		t.Fatal(`docs/config.md has no "## Response-rate limiting (RRL)" section`)
	}
	_, block, ok := strings.Cut(sec, "```yaml\n")
	if !ok {
		t.Fatal("the RRL section has no yaml example")
	}
	block, _, _ = strings.Cut(block, "```")
	return block
}

// askFrom sends one query for name from the local address src and returns
// the answer (nil when none came).
func askFrom(t *testing.T, server, network, src, name string) *dns.Msg {
	t.Helper()
	d := &net.Dialer{Timeout: time.Second}
	if network == "udp" {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	} else {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &dns.Client{Net: network, Timeout: time.Second, Dialer: d}
	r, _, err := c.Exchange(mkQuery(name, dns.TypeA, dns.Id()), server)
	if err != nil {
		return nil
	}
	return r
}

// TestRRLDocExample runs the daemon with docs/config.md's RRL example: one
// /24 floods and gets its burst and rate in full answers and TC=1 for the
// rest, and the real answer over TCP; another /24 querying meanwhile is
// answered in full; the TC answers are counted.
func TestRRLDocExample(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	example := rrlDocExample(t)
	if !strings.Contains(example, `"127.0.0.1:5301"`) || !strings.Contains(example, "qps: 20, burst: 40, v4_prefix: 24") {
		t.Fatalf("the RRL example changed; update this test's figures with it:\n%s", example)
	}
	n := startNode(t, strings.Replace(example, `"127.0.0.1:5301"`, fmt.Sprintf("%q", r1.Addr.String()), 1))
	waitServing(n)

	// Two /24s, both on loopback and inside the default ACL.
	const flooder, calm = "127.0.1.1", "127.0.2.1"
	const floodQueries, calmQueries = 300, 20
	truncates := func() float64 { return n.metric(`anyfront_proxy_rule_actions_total{action="truncate"}`) }
	before := truncates()

	var full, tc, none, calmFull, calmOther int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// 10 a second, well under the rate, while the flood runs.
		for i := range calmQueries {
			r := askFrom(t, n.dns, "udp", calm, fmt.Sprintf("calm%d.%s", i, testlab.RandZone))
			if r != nil && !r.Truncated && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				calmFull++
			} else {
				calmOther++
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	// 150 a second for 2 s, 7.5 times the rate, while the calm /24 asks.
	start := time.Now()
	for i := range floodQueries {
		time.Sleep(time.Until(start.Add(time.Duration(i) * 2 * time.Second / floodQueries)))
		r := askFrom(t, n.dns, "udp", flooder, fmt.Sprintf("flood%d.%s", i, testlab.RandZone))
		switch {
		case r == nil:
			none++
		case r.Truncated && len(r.Answer) == 0 && r.Rcode == dns.RcodeSuccess:
			tc++
		case !r.Truncated && len(r.Answer) > 0:
			full++
		default:
			t.Errorf("flood query %d: unexpected answer %v", i, r)
		}
	}
	took := time.Since(start)
	wg.Wait()
	budget := 40 + 20*took.Seconds()
	t.Logf("flood: %d queries in %v: %d full (budget %.0f), %d TC, %d unanswered; calm: %d full, %d other",
		floodQueries, took.Round(time.Millisecond), full, budget, tc, none, calmFull, calmOther)

	if none != 0 {
		t.Errorf("%d flood queries got no answer: RRL slips with TC=1, it does not drop", none)
	}
	if float64(full) < budget-3 || float64(full) > budget+3 {
		t.Errorf("the flooding /24 got %d full answers, want its budget of about %.0f", full, budget)
	}
	if tc == 0 || full+tc != floodQueries-none {
		t.Errorf("the flooding /24 got %d TC answers", tc)
	}
	if calmFull != calmQueries {
		t.Errorf("the other /24 got %d full answers of %d (%d TC or none)", calmFull, calmQueries, calmOther)
	}
	if got := truncates() - before; got != float64(tc) {
		t.Errorf("anyfront_proxy_rule_actions_total{action=\"truncate\"} rose by %.0f, the flooder saw %d TC answers", got, tc)
	}
	t.Run("the flooder's real clients are served over TCP", func(t *testing.T) {
		r := askFrom(t, n.dns, "tcp", flooder, "www.demo.test.")
		if r == nil || r.Truncated || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			t.Errorf("TCP from the flooding /24: %v", r)
		}
	})
	t.Run("the rule's limited count is in the API", func(t *testing.T) {
		res, err := readGet(n.admin + "/api/v1/rules")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var rules []struct {
			Limited *uint64 `json:"limited"`
		}
		if err := json.NewDecoder(res.Body).Decode(&rules); err != nil || len(rules) == 0 || rules[0].Limited == nil {
			t.Fatalf("GET /api/v1/rules: %v %+v", err, rules)
		}
		if *rules[0].Limited != uint64(tc) {
			t.Errorf("limited %d, the flooder saw %d TC answers", *rules[0].Limited, tc)
		}
	})
}
