package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestDaemonQueryLogAndTop runs the daemon with a dnstap socket nobody
// listens on and every query counted in the top tables: it keeps serving,
// counts the query log's drops in /metrics, and GET /api/v1/top lists the
// clients and names that were sent, busiest first.
func TestDaemonQueryLogAndTop(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	dir, err := os.MkdirTemp("", "aflog") // unix socket paths are short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "tap.sock")
	n := startNode(t, pools(r1)+fmt.Sprintf("query_log: {dnstap: {socket: %q}}\ntop: {sample: 1}\n", sock))
	n.waitFor("r1 checked up", 10*time.Second, func() bool { b := n.backends(); return b["r1"].Checked && b["r1"].Health == "up" })

	for _, c := range []struct {
		from, name string
		n          int
	}{{"127.0.0.7", "a." + testlab.RandZone, 12}, {"127.0.0.8", "b." + testlab.RandZone, 6}} {
		d := &dns.Client{Timeout: 2 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(c.from)}}}
		for range c.n {
			m := new(dns.Msg)
			m.SetQuestion(c.name, dns.TypeA)
			if r, _, err := d.Exchange(m, n.dns); err != nil || r.Rcode != dns.RcodeSuccess {
				t.Fatalf("from %s: %v %v (the query log's missing reader must not stop answers)", c.from, r, err)
			}
		}
	}

	var top struct {
		Enabled bool
		Clients []struct {
			Client  string
			Queries int
		}
		Names []struct {
			Name    string
			Queries int
		}
	}
	n.waitFor("the top lists", 5*time.Second, func() bool {
		resp, err := readGet(n.admin + "/api/v1/top?n=2")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&top); err != nil {
			t.Fatal(err)
		}
		return len(top.Names) == 2 && top.Names[1].Queries == 6
	})
	if got := fmt.Sprint(top.Clients); got != "[{127.0.0.7 12} {127.0.0.8 6}]" {
		t.Errorf("top clients %s", got)
	}
	if got := fmt.Sprint(top.Names); got != fmt.Sprintf("[{a.%s 12} {b.%s 6}]", testlab.RandZone, testlab.RandZone) {
		t.Errorf("top names %s", got)
	}
	n.waitFor("query log drops in /metrics", 5*time.Second, func() bool {
		return n.metric(`anyfront_proxy_querylog_dropped_total{reason="no_reader"}`) >= 36
	})
	m := n.metrics()
	if m["anyfront_proxy_querylog_connected"] != 0 || m["anyfront_proxy_querylog_frames_total"] != 0 {
		t.Errorf("connected %v, frames %v, with no reader", m["anyfront_proxy_querylog_connected"], m["anyfront_proxy_querylog_frames_total"])
	}
}
