package ebpf

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// The lab's responder answers every A query with 192.0.2.80; the answers
// published to XDP carry other addresses, so what a client gets says who
// answered.
const (
	responderAddr = "192.0.2.80"
	cachedEDNS    = "192.0.2.98" // published for queries with EDNS
	cachedPlain   = "192.0.2.99" // published for queries without
)

// labAnswer is an A answer for name with addr, published until expires.
func labAnswer(t *testing.T, name, addr string, edns bool, expires int64) Answer {
	return answerFrom(t, response(name, dns.TypeA, 0, edns, false, []dns.RR{rrA(name, 300, addr)}, nil), expires)
}

// askTool runs dig or kdig in the client namespace from src and returns
// the answer section, one record a line ("" on a timeout).
func askTool(t *testing.T, lab *testlab.XDPLab, tool string, src netip.Addr, name string, args ...string) string {
	t.Helper()
	vip := lab.VIP4
	if src.Is6() {
		vip = lab.VIP6
	}
	argv := append([]string{"@" + vip.String(), "-b", src.String(), name, "A", "+noall", "+answer"}, args...)
	if tool == "dig" {
		argv = append(argv, "+tries=1", "+time=1")
	} else {
		argv = append(argv, "+retry=0", "+time=1")
	}
	cmd, err := lab.Netns(lab.Client).Command(tool, argv...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "timed out") {
		t.Fatalf("%s %s: %v: %s", tool, strings.Join(argv, " "), err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) == 5 && f[3] == "A" {
			lines = append(lines, strings.Join(f, " "))
		}
	}
	return strings.Join(lines, "\n")
}

// record is how askTool prints one A record.
func record(name string, ttl int, addr string) string {
	return fmt.Sprintf("%s %d IN A %s", name, ttl, addr)
}

func TestAnswerCacheEndToEnd(t *testing.T) {
	for _, tool := range []string{"dig", "kdig"} {
		testlab.RequireBinary(t, tool)
	}
	for _, mode := range []string{"generic", "driver"} {
		t.Run(mode, func(t *testing.T) {
			lab, r, d, _ := startLab(t, mode)
			if err := d.SetACL([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:100::/64")}); err != nil {
				t.Fatal(err)
			}
			later := monoNow(t) + int64(time.Hour)
			const name = "cached.example.com."
			published := []Answer{labAnswer(t, name, cachedEDNS, true, later), labAnswer(t, name, cachedPlain, false, later)}
			if err := d.SyncAnswers(published); err != nil {
				t.Fatal(err)
			}
			if got := gather(t, d.Collector())["anyfront_xdp_answer_entries"][""]; got != 2 {
				t.Errorf("anyfront_xdp_answer_entries %v, want 2", got)
			}

			served := func(t *testing.T, want string, ask func() string) {
				t.Helper()
				before, _ := d.Counters()
				seen := r.received(steady) + r.received(steady6)
				if got := ask(); got != want {
					t.Errorf("got %q, want %q", got, want)
				}
				after, _ := d.Counters()
				if after.Answered-before.Answered != 1 || r.received(steady)+r.received(steady6) != seen {
					t.Errorf("counted %d answered; the responder got %d queries", after.Answered-before.Answered,
						r.received(steady)+r.received(steady6)-seen)
				}
			}
			passed := func(t *testing.T, want string, ask func() string) {
				t.Helper()
				before, _ := d.Counters()
				if got := ask(); got != want {
					t.Errorf("got %q, want the responder's %q", got, want)
				}
				if after, _ := d.Counters(); after.Answered != before.Answered {
					t.Errorf("counted %d answered", after.Answered-before.Answered)
				}
			}
			t.Run("dig +nocookie is answered from XDP over IPv4 and IPv6", func(t *testing.T) {
				for _, src := range []netip.Addr{steady, steady6} {
					served(t, record(name, 300, cachedEDNS), func() string { return askTool(t, lab, "dig", src, name, "+nocookie") })
				}
			})
			t.Run("a mixed-case name is answered with its case", func(t *testing.T) {
				served(t, record("CaChEd.ExAmPlE.cOm.", 300, cachedEDNS), func() string {
					return askTool(t, lab, "dig", steady, "CaChEd.ExAmPlE.cOm.", "+nocookie")
				})
			})
			t.Run("kdig is answered from XDP, with and without EDNS", func(t *testing.T) {
				served(t, record(name, 300, cachedEDNS), func() string { return askTool(t, lab, "kdig", steady, name, "+edns") })
				served(t, record(name, 300, cachedPlain), func() string { return askTool(t, lab, "kdig", steady6, name, "+noedns") })
			})
			t.Run("dig with its cookie passes to the server", func(t *testing.T) {
				passed(t, record(name, 60, responderAddr), func() string { return askTool(t, lab, "dig", steady, name) })
			})
			t.Run("a name not published passes", func(t *testing.T) {
				passed(t, record("other.example.com.", 60, responderAddr), func() string {
					return askTool(t, lab, "dig", steady, "other.example.com.", "+nocookie")
				})
			})
			t.Run("an expired answer is never served", func(t *testing.T) {
				const short = "short.example.com."
				ends := monoNow(t) + int64(400*time.Millisecond)
				if err := d.SyncAnswers(append(published, labAnswer(t, short, cachedEDNS, true, ends))); err != nil {
					t.Fatal(err)
				}
				served(t, record(short, 300, cachedEDNS), func() string { return askTool(t, lab, "dig", steady, short, "+nocookie") })
				for monoNow(t) < ends {
					time.Sleep(10 * time.Millisecond)
				}
				for range 3 {
					passed(t, record(short, 60, responderAddr), func() string { return askTool(t, lab, "dig", steady, short, "+nocookie") })
				}
			})
			t.Run("an answer SyncAnswers removed is never served", func(t *testing.T) {
				before := gather(t, d.Collector())["anyfront_xdp_answer_publishes_total"][""]
				if err := d.SyncAnswers(published[1:]); err != nil {
					t.Fatal(err)
				}
				if got := gather(t, d.Collector())["anyfront_xdp_answer_entries"][""]; got != 1 {
					t.Errorf("anyfront_xdp_answer_entries %v, want 1", got)
				}
				if got := gather(t, d.Collector())["anyfront_xdp_answer_publishes_total"][""]; got != before {
					t.Errorf("removing answers published %v", got-before)
				}
				passed(t, record(name, 60, responderAddr), func() string { return askTool(t, lab, "dig", steady, name, "+nocookie") })
				served(t, record(name, 300, cachedPlain), func() string { return askTool(t, lab, "kdig", steady, name, "+noedns") })
			})
			t.Run("hits are counted per answer", func(t *testing.T) {
				hits, err := d.AnswerHits()
				if err != nil {
					t.Fatal(err)
				}
				if len(hits) != 1 || hits[published[1].Key] != 2 {
					t.Errorf("hits %v; want 2 for the plain answer only", hits)
				}
			})
			t.Run("an empty ACL answers nobody", func(t *testing.T) {
				if err := d.SetACL(nil); err != nil {
					t.Fatal(err)
				}
				passed(t, record(name, 60, responderAddr), func() string { return askTool(t, lab, "kdig", steady, name, "+noedns") })
			})
		})
	}
}
