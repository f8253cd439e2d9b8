package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// ruleLab is a proxy with a default pool (with a cache) and a corp pool,
// each on its own unbound, and the given rules.
func ruleLab(t *testing.T, extra string) (*lab, *testlab.Unbound, *testlab.Unbound) {
	t.Helper()
	testlab.RequireBinary(t, "unbound")
	def := testlab.StartUnbound(t, testlab.UnboundOptions{ExtraLocalData: []string{
		"tc.demo.test. 60 IN A 192.0.2.60",
		"nc.demo.test. 60 IN A 192.0.2.61",
		"c.demo.test. 60 IN A 192.0.2.62",
	}})
	corp := testlab.StartUnbound(t, testlab.UnboundOptions{ExtraLocalData: []string{"host.corp.example. 60 IN A 198.51.100.7"}})
	l := runProxy(t, fmt.Sprintf(`proxy: {timeout: 500ms}
pools:
  default: {backends: [{name: d1, address: %q}], cache: {size: 1000}}
  corp: {backends: [{name: c1, address: %q}]}
%s`, def.Addr, corp.Addr, extra))
	return l, def, corp
}

// from sends m to the lab from the local address src.
func (l *lab) from(src, network string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	d := &net.Dialer{Timeout: timeout}
	switch network {
	case "udp":
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(src)}
	default:
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &dns.Client{Net: network, Timeout: timeout, Dialer: d, UDPSize: 65535}
	m.Id = dns.Id()
	r, _, err := c.Exchange(m, l.addr)
	return r, err
}

func backendQueries(t *testing.T, u *testlab.Unbound) float64 {
	t.Helper()
	st, err := u.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st["total.num.queries"]
}

func TestLabRuleActions(t *testing.T) {
	l, def, _ := ruleLab(t, `rules:
  - {match: {qname_suffix: [corp.example]}, action: {pool: corp}}
  - {match: {qname: [nx.rule.test]}, action: {nxdomain: true}}
  - {match: {qname: [rc.rule.test]}, action: {rcode: NOTAUTH}}
  - {match: {qname: [spoof.rule.test]}, action: {spoof: ["192.0.2.99", "2001:db8::99"]}}
  - {match: {qname: [cname.rule.test]}, action: {spoof_cname: www.demo.test}}
  - {match: {qname: [tc.demo.test]}, action: {truncate: true}}
  - {match: {qname_suffix: [rl.demo.test]}, action: {ratelimit: {qps: 1, burst: 3, over: refuse}}}
  - {match: {qname: [nc.demo.test]}, action: {nocache: true}}
  - {match: {qname_suffix: [log.demo.test]}, action: {log: true}}
  - {match: {qname: [drop.rule.test]}, action: {drop: true}}
  - {match: {qname: [stream.rule.test], transport: [tcp]}, action: {refuse: true}}
  - {match: {qname: [norec.rule.test], rd: false}, action: {refuse: true}}
  - {match: {opcode: [NOTIFY]}, action: {pool: default}}
  - {match: {qname_suffix: [combo.rule.test], not: {client: ["127.0.0.0/8"]}}, action: {drop: true}}
  - {match: {any: [{qname: [any1.rule.test]}, {qname: [any2.rule.test]}], qtype: [TXT]}, action: {rcode: YXDOMAIN}}
`)
	ask := func(t *testing.T, network, name string, qtype uint16) *dns.Msg {
		t.Helper()
		r, err := l.exchange(network, dnstest.Query(name, qtype))
		if err != nil {
			t.Fatalf("%s %s: %v", network, name, err)
		}
		return r
	}
	wantRcode := func(t *testing.T, r *dns.Msg, rc int) {
		t.Helper()
		if r.Rcode != rc {
			t.Fatalf("want %s, got %v", dns.RcodeToString[rc], r)
		}
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Run("pool", func(t *testing.T) { wantA(t, ask(t, network, "Host.Corp.Example.", dns.TypeA), "198.51.100.7") })
			t.Run("nxdomain", func(t *testing.T) { wantRcode(t, ask(t, network, "nx.rule.test.", dns.TypeA), dns.RcodeNameError) })
			t.Run("rcode", func(t *testing.T) { wantRcode(t, ask(t, network, "rc.rule.test.", dns.TypeA), dns.RcodeNotAuth) })
			t.Run("spoof A and AAAA", func(t *testing.T) {
				wantA(t, ask(t, network, "spoof.rule.test.", dns.TypeA), "192.0.2.99")
				r := ask(t, network, "spoof.rule.test.", dns.TypeAAAA)
				if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != "2001:db8::99" {
					t.Errorf("AAAA: %v", r)
				}
			})
			t.Run("spoof CNAME", func(t *testing.T) {
				r := ask(t, network, "cname.rule.test.", dns.TypeA)
				if c, ok := r.Answer[0].(*dns.CNAME); !ok || c.Target != "www.demo.test." {
					t.Errorf("%v", r)
				}
			})
			t.Run("drop", func(t *testing.T) {
				if r, err := l.from("127.0.0.1", network, dnstest.Query("drop.rule.test.", dns.TypeA), 300*time.Millisecond); err == nil {
					t.Errorf("dropped query answered: %v", r)
				}
			})
			t.Run("log goes on to the next rule", func(t *testing.T) {
				wantRcode(t, ask(t, network, "x.log.demo.test.", dns.TypeA), dns.RcodeNameError) // from unbound
			})
			t.Run("transport", func(t *testing.T) {
				r := ask(t, network, "stream.rule.test.", dns.TypeA)
				if network == "tcp" {
					wantRcode(t, r, dns.RcodeRefused)
				} else if r.Rcode == dns.RcodeRefused {
					t.Error("a tcp rule fired for udp")
				}
			})
		})
	}
	t.Run("truncate: TC over dnswire.UDP, the real answer over TCP", func(t *testing.T) {
		r := ask(t, "udp", "tc.demo.test.", dns.TypeA)
		if !r.Truncated || len(r.Answer) != 0 {
			t.Errorf("udp: %v", r)
		}
		wantA(t, ask(t, "tcp", "tc.demo.test.", dns.TypeA), "192.0.2.60")
	})
	t.Run("ratelimit: the burst passes, the rest is refused", func(t *testing.T) {
		var passed, refused int
		for i := 0; i < 10; i++ {
			r := ask(t, "udp", fmt.Sprintf("q%d.rl.demo.test.", i), dns.TypeA)
			switch r.Rcode {
			case dns.RcodeRefused:
				refused++
			case dns.RcodeNameError:
				passed++
			}
		}
		if passed < 3 || passed > 4 || refused != 10-passed {
			t.Errorf("passed %d refused %d, want 3 (4 if a second went by) and the rest", passed, refused)
		}
	})
	t.Run("nocache: every query reaches the backend", func(t *testing.T) {
		ask(t, "udp", "c.demo.test.", dns.TypeA)
		ask(t, "udp", "nc.demo.test.", dns.TypeA)
		before := backendQueries(t, def)
		for i := 0; i < 5; i++ {
			wantA(t, ask(t, "udp", "c.demo.test.", dns.TypeA), "192.0.2.62") // cached
		}
		if got := backendQueries(t, def) - before; got != 0 {
			t.Fatalf("a cached name reached the backend %v times", got)
		}
		for i := 0; i < 5; i++ {
			wantA(t, ask(t, "udp", "nc.demo.test.", dns.TypeA), "192.0.2.61")
		}
		if got := backendQueries(t, def) - before; got != 5 {
			t.Errorf("nocache name reached the backend %v times of 5", got)
		}
	})
	t.Run("rd: false fires only without RD", func(t *testing.T) {
		q := dnstest.Query("norec.rule.test.", dns.TypeA)
		q.RecursionDesired = false
		wantRcode(t, mustExchange(t, l, q), dns.RcodeRefused)
		if r := ask(t, "udp", "norec.rule.test.", dns.TypeA); r.Rcode == dns.RcodeRefused {
			t.Error("rd: false fired for an RD query")
		}
	})
	t.Run("an opcode rule forwards NOTIFY; other opcodes get NOTIMP", func(t *testing.T) {
		before := backendQueries(t, def)
		q := dnstest.Query("demo.test.", dns.TypeSOA)
		q.Opcode = dns.OpcodeNotify
		r := mustExchange(t, l, q)
		if backendQueries(t, def) == before {
			t.Errorf("NOTIFY was not forwarded: %v", r)
		}
		q = dnstest.Query("demo.test.", dns.TypeSOA)
		q.Opcode = dns.OpcodeStatus
		wantRcode(t, mustExchange(t, l, q), dns.RcodeNotImplemented)
	})
	t.Run("matches that must not fire", func(t *testing.T) {
		// not: {client: 127/8} excludes us.
		if r := ask(t, "udp", "x.combo.rule.test.", dns.TypeA); r == nil {
			t.Error("no answer")
		}
		// any: matches only for TXT.
		if r := ask(t, "udp", "any1.rule.test.", dns.TypeA); r.Rcode == dns.RcodeYXDomain {
			t.Error("qtype condition ignored")
		}
		wantRcode(t, ask(t, "udp", "any2.rule.test.", dns.TypeTXT), dns.RcodeYXDomain)
		// Exact names do not match their subdomains, suffixes do not
		// match across a label boundary.
		if r := ask(t, "udp", "a.spoof.rule.test.", dns.TypeA); len(r.Answer) > 0 {
			t.Errorf("exact name matched a subdomain: %v", r)
		}
		wantA(t, ask(t, "udp", "www.demo.test.", dns.TypeA), "192.0.2.11")
		if r := ask(t, "udp", "xcorp.example.", dns.TypeA); len(r.Answer) > 0 {
			t.Errorf("suffix matched across a label: %v", r)
		}
	})
	t.Run("hit counters in the rule list", func(t *testing.T) {
		list := l.p.RuleList()
		if len(list) != 15 {
			t.Fatalf("%d rules listed", len(list))
		}
		if list[0].Hits != 2 || list[1].Hits != 2 || list[6].Limited == nil || *list[6].Limited == 0 {
			t.Errorf("hits: %+v", list)
		}
		if list[0].Action["pool"] != "corp" || list[0].Match["qname_suffix"].([]string)[0] != "corp.example." {
			t.Errorf("view: %+v", list[0])
		}
	})
}

func mustExchange(t *testing.T, l *lab, q *dns.Msg) *dns.Msg {
	t.Helper()
	r, err := l.exchange("udp", q)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestLabRulesReload(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	base := fmt.Sprintf("pools:\n  default: {backends: [{name: d1, address: %q}]}\n", ub.Addr)
	l := runProxy(t, base+"rules:\n  - {match: {qname: [www.demo.test]}, action: {refuse: true}}\n")
	if r := mustExchange(t, l, dnstest.Query("www.demo.test.", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Fatalf("before reload: %v", r)
	}
	text := fmt.Sprintf("listen: [{address: %q}]\n%srules:\n  - {match: {qname: [demo.test]}, action: {spoof: [192.0.2.77]}}\n", l.addr, base)
	cfg, err := config.Parse("lab.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	l.p.Reload(cfg)
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := mustExchange(t, l, dnstest.Query("demo.test.", dns.TypeA))
		if len(r.Answer) > 0 && r.Answer[0].(*dns.A).A.String() == "192.0.2.77" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new rule did not apply: %v", r)
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantA(t, mustExchange(t, l, dnstest.Query("www.demo.test.", dns.TypeA)), "192.0.2.11") // old rule gone
	list := l.p.RuleList()
	if len(list) != 1 || list[0].Hits == 0 || list[0].Action["spoof"] == nil {
		t.Errorf("rule list after reload: %+v", list)
	}
}

// fakeBlocker records the blocks that would go to the XDP blocklist.
type fakeBlocker struct {
	mu     sync.Mutex
	blocks map[netip.Prefix]time.Time
}

func (f *fakeBlocker) Block(p netip.Prefix, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocks == nil {
		f.blocks = map[netip.Prefix]time.Time{}
	}
	f.blocks[p] = until
	return nil
}

func (f *fakeBlocker) has(p netip.Prefix) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.blocks[p]
	return ok
}

func TestLabDynBlockNXDOMAINFlood(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	fb := &fakeBlocker{}
	l := runConfigDeps(t, addr, fmt.Sprintf(`listen: [{address: %q}]
pools:
  default: {backends: [{name: d1, address: %q}], cache: {size: 1000}}
dynamic_blocks:
  action: refuse
  detectors:
    - {kind: rcode, rcode: NXDOMAIN, rate: 20, window: 1s, block_for: 1s}
`, addr, ub.Addr), Deps{Blocker: fb})
	const flooder, bystander = "127.0.0.1", "127.0.0.2"
	ask := func(src, network, name string) *dns.Msg {
		t.Helper()
		r, err := l.from(src, network, dnstest.Query(name, dns.TypeA), 2*time.Second)
		if err != nil {
			t.Fatalf("%s %s from %s: %v", network, name, src, err)
		}
		return r
	}
	flood := func(names func(i int) string) {
		t.Helper()
		for i := 0; i < 200; i++ {
			r := ask(flooder, "udp", names(i))
			if r.Rcode == dns.RcodeRefused {
				return
			}
		}
		t.Fatal("200 NXDOMAIN queries in a burst and no block")
	}
	check := func(t *testing.T) {
		t.Helper()
		if r := ask(flooder, "udp", "www.demo.test."); r.Rcode != dns.RcodeRefused {
			t.Errorf("the flooder is not blocked: %v", r)
		}
		if r := ask(flooder, "tcp", "www.demo.test."); r.Rcode != dns.RcodeRefused {
			t.Errorf("the flooder is not blocked over dnswire.TCP: %v", r)
		}
		wantA(t, ask(bystander, "udp", "www.demo.test."), "192.0.2.11")
		blocks := l.p.BlockList()
		if len(blocks) != 1 || blocks[0].Prefix != "127.0.0.1/32" || blocks[0].Dropped < 2 {
			t.Errorf("blocks: %+v", blocks)
		}
		if !fb.has(netip.MustParsePrefix("127.0.0.1/32")) {
			t.Error("not sent to XDP")
		}
		deadline := time.Now().Add(5 * time.Second)
		for ask(flooder, "udp", "www.demo.test.").Rcode == dns.RcodeRefused {
			if time.Now().After(deadline) {
				t.Fatal("the block did not expire")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(l.p.BlockList()) != 0 {
			t.Errorf("expired block still listed: %+v", l.p.BlockList())
		}
	}
	t.Run("a flood of one cached NXDOMAIN", func(t *testing.T) {
		flood(func(int) string { return "nx.demo.test." })
		check(t)
	})
	t.Run("unblock over the API lifts the block", func(t *testing.T) {
		flood(func(int) string { return "nx.demo.test." })
		if err := l.p.Unblock(netip.MustParsePrefix("127.0.0.1/32")); err != nil {
			t.Fatal(err)
		}
		wantA(t, ask(flooder, "udp", "www.demo.test."), "192.0.2.11")
	})
	t.Run("a flood of random NXDOMAIN names from the backend", func(t *testing.T) {
		time.Sleep(1100 * time.Millisecond) // a fresh window
		flood(func(i int) string { return fmt.Sprintf("r%d-%d.nx.demo.test.", i, time.Now().UnixNano()) })
		check(t)
	})
}

// TestLabRulesAndDynBlocksAllocs asserts rules and dynamic blocks add no
// allocation to the UDP forward path and to cache hits.
func TestLabRulesAndDynBlocksAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	var suffixes string
	for i := 0; i < 1000; i++ {
		suffixes += fmt.Sprintf("s%d.example, ", i)
	}
	l := runProxy(t, fmt.Sprintf(`pools:
  default: {backends: [{name: d1, address: %q}], cache: {size: 1000}}
rules:
  - {match: {qname_suffix: [%s x.example]}, action: {drop: true}}
  - {match: {qname: [www.demo.test]}, action: {ratelimit: {qps: 1000000000}}}
  - {match: {qname: [www.demo.test]}, action: {log: true}}
  - {match: {qname: [www.demo.test]}, action: {nocache: true}}
dynamic_blocks:
  detectors:
    - {kind: queries, rate: 1e9}
    - {kind: rcode, rcode: NXDOMAIN, rate: 1e9}
`, ub.Addr, suffixes))
	c, err := net.Dial("udp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4096)
	for _, name := range []string{"www.demo.test.", "demo.test."} { // forwarded, cached
		q := dnstest.Pack(t, dnstest.Query(name, dns.TypeA))
		roundTrip := func() {
			if _, err := c.Write(q); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				t.Fatal(err)
			}
		}
		for i := 0; i < 200; i++ {
			roundTrip()
		}
		if avg := testing.AllocsPerRun(2000, roundTrip); avg > 0.05 {
			t.Errorf("%s: %.2f allocations per query, want 0", name, avg)
		}
	}
}
