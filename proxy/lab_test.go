package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// lab is a running proxy in front of real unbound resolvers.
type lab struct {
	p        *Proxy
	addr     string // the proxy's listen address
	backends []*testlab.Unbound
	store    *state.Store
}

// startLab starts n unbound backends and a proxy over them. extra is YAML
// appended to the generated config (top-level keys only).
func startLab(t testing.TB, n int, pool string, extra string) *lab {
	t.Helper()
	var backends []*testlab.Unbound
	var b strings.Builder
	for i := 0; i < n; i++ {
		u := testlab.StartUnbound(t, testlab.UnboundOptions{})
		backends = append(backends, u)
		fmt.Fprintf(&b, "      - {name: r%d, address: %q}\n", i+1, u.Addr.String())
	}
	if pool == "" {
		pool = "policy: roundrobin"
	}
	l := runProxy(t, fmt.Sprintf("pools:\n  default:\n    %s\n    backends:\n%s%s\n", pool, b.String(), extra))
	l.backends = backends
	return l
}

// runProxy runs a proxy with the config yml (without listen, which it adds)
// and returns once it answers.
func runProxy(t testing.TB, yml string) *lab {
	t.Helper()
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return runConfig(t, addr, fmt.Sprintf("listen: [{address: %q}]\n%s", addr, yml))
}

// runConfig runs a proxy with the whole config yml, whose first do53
// listener is addr, and returns once it answers there. The proxy stops
// with the test. before, if given, sees the proxy before it runs.
func runConfig(t testing.TB, addr, yml string, before ...func(*Proxy)) *lab {
	t.Helper()
	return runConfigDeps(t, addr, yml, Deps{}, before...)
}

// runConfigDeps is runConfig with deps (a Blocker, say); it sets their
// Store and Log.
func runConfigDeps(t testing.TB, addr, yml string, deps Deps, before ...func(*Proxy)) *lab {
	t.Helper()
	l := &lab{addr: addr}
	cfg, err := config.Parse("lab.yaml", []byte(yml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yml, err)
	}
	if l.store, err = state.New(); err != nil {
		t.Fatal(err)
	}
	if err := l.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	deps.Store, deps.Log = l.store, log
	if l.p, err = New(cfg, deps); err != nil {
		t.Fatal(err)
	}
	for _, f := range before {
		f(l.p)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("proxy Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("proxy did not stop within 10s")
		}
	})
	// Ready when it answers anything.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := l.exchange("udp", dnstest.Query("ready.demo.test.", dns.TypeA)); err == nil {
			return l
		}
		select {
		case err := <-done:
			done <- err // for the cleanup
			t.Fatalf("proxy Run: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("proxy did not answer within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *lab) exchange(network string, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	m.Id = dns.Id()
	r, _, err := c.Exchange(m, l.addr)
	return r, err
}

func wantA(t testing.TB, r *dns.Msg, ip string) {
	t.Helper()
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
		t.Fatalf("want NOERROR with an answer, got %v", r)
	}
	a, ok := r.Answer[0].(*dns.A)
	if !ok || a.A.String() != ip {
		t.Fatalf("want A %s, got %v", ip, r.Answer[0])
	}
}

// hammer sends total queries from workers goroutines and returns the first
// failure, or nil when every query got the expected answer.
func hammer(l *lab, network string, workers, total int, check func(*dns.Msg) error) error {
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func(w int) {
			c := &dns.Client{Net: network, Timeout: 5 * time.Second}
			var conn *dns.Conn
			for i := w; i < total; i += workers {
				if conn == nil {
					var err error
					if conn, err = c.Dial(l.addr); err != nil {
						errs <- err
						return
					}
				}
				q := dnstest.Query(fmt.Sprintf("q%d.rand.demo.test.", i), dns.TypeA)
				r, _, err := c.ExchangeWithConn(q, conn)
				if err == nil {
					err = check(r)
				}
				if err != nil {
					conn.Close()
					errs <- fmt.Errorf("query %d: %w", i, err)
					return
				}
			}
			conn.Close()
			errs <- nil
		}(w)
	}
	var first error
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func noerror(r *dns.Msg) error {
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return fmt.Errorf("got rcode %s with %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
	}
	return nil
}

func TestLabForwarding(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 2, "", "")

	t.Run("thousands of dnswire.UDP queries are all answered", func(t *testing.T) {
		if err := hammer(l, "udp", 8, 4000, noerror); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("thousands of dnswire.TCP queries are all answered", func(t *testing.T) {
		if err := hammer(l, "tcp", 8, 2000, noerror); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("both backends carry the load", func(t *testing.T) {
		for _, u := range l.backends {
			st, err := u.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st["total.num.queries"] < 1000 {
				t.Errorf("backend %s got %v queries", u.Addr, st["total.num.queries"])
			}
		}
	})
	t.Run("mixed-case question is echoed as sent", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			r, err := l.exchange(network, dnstest.Query("DeMo.TeSt.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			wantA(t, r, "192.0.2.10")
			if r.Question[0].Name != "DeMo.TeSt." {
				t.Errorf("%s: question echoed as %q", network, r.Question[0].Name)
			}
		}
	})
	t.Run("large answer is truncated for a non-EDNS dnswire.UDP client", func(t *testing.T) {
		r, err := l.exchange("udp", dnstest.Query("big.demo.test.", dns.TypeTXT))
		if err != nil {
			t.Fatal(err)
		}
		if !r.Truncated || len(r.Answer) != 0 && r.Len() > 512 {
			t.Fatalf("want TC=1 within 512 bytes, got TC=%v len=%d", r.Truncated, r.Len())
		}
	})
	t.Run("large answer comes whole over TCP", func(t *testing.T) {
		r, err := l.exchange("tcp", dnstest.Query("big.demo.test.", dns.TypeTXT))
		if err != nil {
			t.Fatal(err)
		}
		if r.Truncated || len(r.Answer) < 20 || r.Len() < 2048 {
			t.Fatalf("want the whole answer, got TC=%v %d records %d bytes", r.Truncated, len(r.Answer), r.Len())
		}
	})
	t.Run("EDNS passes through: DO echoed, unknown version gets BADVERS", func(t *testing.T) {
		q := dnstest.Query("demo.test.", dns.TypeA)
		q.SetEdns0(1232, true)
		r, err := l.exchange("udp", q)
		if err != nil {
			t.Fatal(err)
		}
		if opt := r.IsEdns0(); opt == nil || !opt.Do() {
			t.Errorf("want OPT with DO, got %v", r)
		}
		q = dnstest.Query("demo.test.", dns.TypeA)
		q.SetEdns0(1232, false)
		q.IsEdns0().SetVersion(1)
		r, err = l.exchange("udp", q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeBadVers {
			t.Errorf("want BADVERS from the backend, got %s", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("QDCOUNT 2 gets FORMERR and NOTIFY gets NOTIMP", func(t *testing.T) {
		q := dnstest.Query("demo.test.", dns.TypeA)
		q.Question = append(q.Question, q.Question[0])
		r, err := l.exchange("udp", q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeFormatError {
			t.Errorf("want FORMERR, got %s", dns.RcodeToString[r.Rcode])
		}
		q = dnstest.Query("demo.test.", dns.TypeSOA)
		q.Opcode = dns.OpcodeNotify
		r, err = l.exchange("tcp", q)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeNotImplemented {
			t.Errorf("want NOTIMP, got %s", dns.RcodeToString[r.Rcode])
		}
	})
	t.Run("a flood of malformed datagrams leaves the proxy serving", func(t *testing.T) {
		c, err := net.Dial("udp", l.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		before := l.p.stats.Malformed()
		valid := dnstest.Pack(t, dnstest.Query("demo.test.", dns.TypeA))
		junk := [][]byte{
			{}, {1}, valid[:11], valid[:dnswire.HeaderLen+2],
			append(append([]byte{}, valid[:dnswire.HeaderLen]...), 0xC0, 12, 0, 1, 0, 1),
		}
		resp := append([]byte{}, valid...)
		resp[2] |= 0x80 // QR
		junk = append(junk, resp)
		for i := 0; i < 5000; i++ {
			if _, err := c.Write(junk[i%len(junk)]); err != nil {
				t.Fatal(err)
			}
		}
		r, err := l.exchange("udp", dnstest.Query("www.demo.test.", dns.TypeA))
		if err != nil {
			t.Fatal(err)
		}
		wantA(t, r, "192.0.2.11")
		// The empty datagrams may be coalesced away by nothing, but most
		// of the others must have been seen and counted.
		if got := l.p.stats.Malformed() - before; got < 3000 {
			t.Errorf("counted %d malformed of 5000", got)
		}
	})
}

func TestLabPipelinedTCP(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 2, "", "")
	c, err := dns.Dial("tcp", l.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 100
	want := map[uint16]string{}
	for i := 0; i < n; i++ {
		q := dnstest.Query(fmt.Sprintf("p%d.rand.demo.test.", i), dns.TypeA)
		q.Id = uint16(1000 + i)
		want[q.Id] = q.Question[0].Name
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < n; i++ {
		r, err := c.ReadMsg()
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		name, ok := want[r.Id]
		if !ok || r.Question[0].Name != name || noerror(r) != nil {
			t.Fatalf("unexpected answer %v", r)
		}
		delete(want, r.Id)
	}
}

func TestLabACL(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 1, "", `acl: ["192.0.2.0/24"]`)
	before, err := l.backends[0].Stats()
	if err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		r, err := l.exchange(network, dnstest.Query("demo.test.", dns.TypeA))
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeRefused {
			t.Errorf("%s: a client outside the ACL got %s, want REFUSED", network, dns.RcodeToString[r.Rcode])
		}
	}
	after, err := l.backends[0].Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := after["total.num.queries"] - before["total.num.queries"]; got != 0 {
		t.Errorf("the backend saw %v queries from refused clients", got)
	}
}

func TestLabFailover(t *testing.T) {
	testlab.RequireBinary(t, "unbound")

	t.Run("one dead backend in the pool costs no failed query", func(t *testing.T) {
		l := startLab(t, 2, "", "")
		l.backends[0].Kill()
		for _, network := range []string{"udp", "tcp"} {
			if err := hammer(l, network, 4, 1000, noerror); err != nil {
				t.Fatalf("%s: %v", network, err)
			}
		}
	})
	t.Run("a hung backend costs no failed query", func(t *testing.T) {
		l := startLab(t, 2, "", "proxy: {timeout: 300ms}")
		if err := l.backends[1].Stop(); err != nil {
			t.Fatal(err)
		}
		defer l.backends[1].Cont()
		if err := hammer(l, "udp", 16, 400, noerror); err != nil {
			t.Fatal(err)
		}
		if l.p.stats.Retries.Load() == 0 {
			t.Error("no query was retried")
		}
	})
	t.Run("a pool of dead backends gets SERVFAIL at once", func(t *testing.T) {
		l := startLab(t, 2, "", "")
		for _, u := range l.backends {
			u.Kill()
		}
		for _, network := range []string{"udp", "tcp"} {
			start := time.Now()
			r, err := l.exchange(network, dnstest.Query("demo.test.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s: want SERVFAIL, got %s", network, dns.RcodeToString[r.Rcode])
			}
			// Refusals come back at once: no waiting for a timeout.
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: SERVFAIL took %v", network, d)
			}
		}
	})
	t.Run("a pool of hung backends gets SERVFAIL after the retry budget, not a hang", func(t *testing.T) {
		l := startLab(t, 2, "", "proxy: {timeout: 200ms}")
		for _, u := range l.backends {
			if err := u.Stop(); err != nil {
				t.Fatal(err)
			}
			defer u.Cont()
		}
		for _, network := range []string{"udp", "tcp"} {
			start := time.Now()
			r, err := l.exchange(network, dnstest.Query("demo.test.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeServerFailure {
				t.Fatalf("%s: want SERVFAIL, got %s", network, dns.RcodeToString[r.Rcode])
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("%s: SERVFAIL took %v", network, d)
			}
		}
	})
}

// TestLabForwardAllocs asserts the UDP forward path allocates nothing per
// query in steady state.
func TestLabForwardAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 2, "", "")
	if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
		t.Errorf("%.2f allocations per forwarded query, want 0", avg)
	}
}

// udpAllocsPerQuery warms the proxy at addr up with 200 queries for name,
// then returns the process's allocations per query over 2,000 more. The
// client reuses its buffers and the backend is another process, so every
// allocation counted is the proxy's.
func udpAllocsPerQuery(t *testing.T, addr, name string) float64 {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := dnstest.Pack(t, dnstest.Query(name, dns.TypeA))
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 200; i++ { // warm up: buffers grown, sockets open
		roundTrip()
	}
	return testing.AllocsPerRun(2000, roundTrip)
}

func TestLabMetrics(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 1, "", "")
	if _, err := l.exchange("udp", dnstest.Query("www.demo.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l.p.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range mfs {
		got[mf.GetName()] = true
		if mf.GetName() == "anyfront_proxy_backend_latency_seconds" {
			m := mf.GetMetric()[0]
			if m.GetHistogram().GetSampleCount() == 0 || len(m.GetLabel()) != 2 {
				t.Errorf("latency histogram: %v", m)
			}
		}
	}
	for _, name := range []string{
		"anyfront_proxy_queries_total", "anyfront_proxy_responses_total", "anyfront_proxy_local_answers_total",
		"anyfront_proxy_dropped_total", "anyfront_proxy_backend_queries_total", "anyfront_proxy_backend_outcomes_total",
		"anyfront_proxy_backend_outstanding", "anyfront_proxy_backend_latency_seconds", "anyfront_proxy_udp_inflight",
	} {
		if !got[name] {
			t.Errorf("metric %s missing", name)
		}
	}
}

// BenchmarkForwardUDP measures a query's round trip through the proxy to a
// real unbound and back, from parallel clients; allocations are the whole
// process's, client included.
func BenchmarkForwardUDP(b *testing.B) {
	testlab.RequireBinary(b, "unbound")
	l := startLab(b, 2, "", "")
	q := dnstest.Pack(b, dnstest.Query("www.demo.test.", dns.TypeA))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("udp", l.addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		for pb.Next() {
			if _, err := c.Write(q); err != nil {
				b.Error(err)
				return
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestLabRules(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	def := testlab.StartUnbound(t, testlab.UnboundOptions{})
	corp := testlab.StartUnbound(t, testlab.UnboundOptions{ExtraLocalData: []string{"host.corp.example. 60 IN A 198.51.100.7"}})
	l := runProxy(t, fmt.Sprintf(`pools:
  default: {backends: [{name: d1, address: %q}]}
  corp: {backends: [{name: c1, address: %q}]}
rules:
  - {match: {qname_suffix: ["corp.example."]}, action: {pool: corp}}
  - {match: {qtype: [ANY]}, action: {refuse: true}}
  - {match: {qname_suffix: ["blocked.example."]}, action: {drop: true}}
  - {match: {qname: ["spoof.example."]}, action: {spoof: ["192.0.2.99"]}}
`, def.Addr, corp.Addr))
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			r, err := l.exchange(network, dnstest.Query("Host.Corp.Example.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			wantA(t, r, "198.51.100.7") // only the corp backend knows it
			r, err = l.exchange(network, dnstest.Query("demo.test.", dns.TypeANY))
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeRefused {
				t.Errorf("ANY: %s, want REFUSED", dns.RcodeToString[r.Rcode])
			}
			r, err = l.exchange(network, dnstest.Query("spoof.example.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			wantA(t, r, "192.0.2.99")
			c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
			if r, _, err := c.Exchange(dnstest.Query("x.blocked.example.", dns.TypeA), l.addr); err == nil {
				t.Errorf("dropped query was answered: %v", r)
			}
			r, err = l.exchange(network, dnstest.Query("www.demo.test.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			wantA(t, r, "192.0.2.11") // no rule: the default pool
		})
	}
	if got := l.p.stats.RuleDropped.Load(); got != 2 {
		t.Errorf("rule drops counted %d, want 2", got)
	}
}

// TestLabGCReachesWaitingReaders: a reader that saw traffic waits in a raw
// recvmmsg (sock_linux.go) holding its P, so a stop-the-world must reach it
// with a signal, which ends the wait with EINTR. Were the wait restarted
// instead, every collection would last until the 250ms receive timeout.
func TestLabGCReachesWaitingReaders(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 1, "", "")
	var pauses []time.Duration
	for i := 0; i < 5; i++ {
		if _, err := l.exchange("udp", dnstest.Query("www.demo.test.", dns.TypeA)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		runtime.GC()
		pauses = append(pauses, time.Since(start))
	}
	slices.Sort(pauses)
	if med := pauses[len(pauses)/2]; med > 125*time.Millisecond {
		t.Errorf("runtime.GC took %v (median of %v) with readers waiting: a reader's wait was not interrupted", med, pauses)
	}
}
