package proxy

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/pcache"
)

// TestLabCache proves answers come from the cache by freezing the only
// backend (SIGSTOP) and asking again.
func TestLabCache(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{ExtraLocalData: []string{
		"short.demo.test. 2 IN A 192.0.2.50",
		"pre.demo.test. 4 IN A 192.0.2.51",
	}})
	l := runProxy(t, fmt.Sprintf(`proxy: {timeout: 300ms}
pools:
  default:
    backends: [{name: r1, address: %q}]
    cache: {size: 1000, serve_stale: 60s}
`, ub.Addr))
	queries := func() float64 {
		t.Helper()
		st, err := ub.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st["total.num.queries"]
	}
	ask := func(network, name string, qtype uint16) *dns.Msg {
		t.Helper()
		r, err := l.exchange(network, dnstest.Query(name, qtype))
		if err != nil {
			t.Fatalf("%s %s: %v", network, name, err)
		}
		return r
	}
	// Fill the cache while the backend runs.
	ask("udp", "www.demo.test.", dns.TypeA)
	ask("udp", "nx.demo.test.", dns.TypeA)
	ask("udp", "short.demo.test.", dns.TypeA)
	before := queries()
	ttl0 := ask("tcp", "www.demo.test.", dns.TypeA).Answer[0].Header().Ttl
	if queries() != before {
		t.Fatal("a cached name was asked of the backend again")
	}

	if err := ub.Stop(); err != nil {
		t.Fatal(err)
	}
	frozen := true
	defer func() {
		if frozen {
			ub.Cont()
		}
	}()
	time.Sleep(1100 * time.Millisecond) // let TTLs age by a second

	t.Run("hits answer with the client's case and TTLs lowered by age", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			r := ask(network, "WwW.DeMo.TeSt.", dns.TypeA)
			wantA(t, r, "192.0.2.11")
			if r.Question[0].Name != "WwW.DeMo.TeSt." {
				t.Errorf("%s: question echoed as %q", network, r.Question[0].Name)
			}
			if ttl := r.Answer[0].Header().Ttl; ttl >= ttl0 {
				t.Errorf("%s: TTL %d not below the first answer's %d", network, ttl, ttl0)
			}
		}
	})
	t.Run("NXDOMAIN comes from the cache", func(t *testing.T) {
		if r := ask("udp", "nx.demo.test.", dns.TypeA); r.Rcode != dns.RcodeNameError || len(r.Ns) == 0 {
			t.Errorf("want NXDOMAIN with its SOA, got %v", r)
		}
	})
	t.Run("an expired entry answers stale while the backend is frozen", func(t *testing.T) {
		time.Sleep(1500 * time.Millisecond) // short.demo.test's 2s TTL has passed
		for _, network := range []string{"udp", "tcp"} {
			r := ask(network, "short.demo.test.", dns.TypeA)
			wantA(t, r, "192.0.2.50")
			if ttl := r.Answer[0].Header().Ttl; ttl != pcache.StaleTTL {
				t.Errorf("%s: stale answer TTL %d, want %d", network, ttl, pcache.StaleTTL)
			}
		}
	})

	if err := ub.Cont(); err != nil {
		t.Fatal(err)
	}
	frozen = false

	t.Run("a name asked for near its expiry is refreshed before it expires", func(t *testing.T) {
		ask("udp", "pre.demo.test.", dns.TypeA) // miss: cached for 4s
		time.Sleep(3200 * time.Millisecond)
		before := queries()
		ask("udp", "pre.demo.test.", dns.TypeA) // a hit in the last second: prefetch
		deadline := time.Now().Add(700 * time.Millisecond)
		for queries() == before {
			if time.Now().After(deadline) {
				t.Fatal("no prefetch reached the backend before the entry expired")
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(1200 * time.Millisecond) // past the old expiry
		before = queries()
		if r := ask("udp", "pre.demo.test.", dns.TypeA); r.Answer[0].Header().Ttl < 2 {
			t.Errorf("TTL %d after the refresh", r.Answer[0].Header().Ttl)
		}
		if queries() != before {
			t.Error("the refreshed entry missed")
		}
	})
	t.Run("purge sends the next query to the backend", func(t *testing.T) {
		n, err := l.p.PurgeCache("demo.test.")
		if err != nil || n < 3 {
			t.Fatalf("purged %d, %v", n, err)
		}
		before := queries()
		ask("udp", "www.demo.test.", dns.TypeA)
		if queries() != before+1 {
			t.Error("a purged name did not reach the backend")
		}
	})
}

// TestLabCacheHitAllocs asserts a cache hit through the whole UDP path
// allocates nothing.
func TestLabCacheHitAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	l := runProxy(t, fmt.Sprintf("pools:\n  default:\n    backends: [{name: r1, address: %q}]\n    cache: {size: 1000}\n", ub.Addr))
	l.exchange("udp", dnstest.Query("www.demo.test.", dns.TypeA)) // fills the cache
	hits := l.p.snap.Load().def.cache.Stats().Hits
	if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
		t.Errorf("%.2f allocations per cache hit, want 0", avg)
	}
	if got := l.p.snap.Load().def.cache.Stats().Hits - hits; got < 2200 {
		t.Errorf("only %d of the measured queries were cache hits", got)
	}
}
