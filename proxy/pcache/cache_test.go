package pcache

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

func cacheCfg(size int) config.Cache {
	return config.Cache{Size: size, MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour, ServeStale: time.Minute, Prefetch: true}
}

// keyed parses a query and fills its cache key.
func keyed(t testing.TB, q *dns.Msg) ([]byte, *qview) {
	t.Helper()
	raw := dnstest.Pack(t, q)
	v := new(qview)
	if err := v.ParseQuery(raw); err != nil {
		t.Fatal(err)
	}
	v.key.Set(&v.View)
	return raw, v
}

func answerA(t testing.TB, q *dns.Msg, ttls ...uint32) []byte {
	r := new(dns.Msg)
	r.SetReply(q)
	for i, ttl := range ttls {
		rr, err := dns.NewRR(q.Question[0].Name + " 0 IN A 192.0.2." + string(rune('1'+i)))
		if err != nil {
			t.Fatal(err)
		}
		rr.Header().Ttl = ttl
		r.Answer = append(r.Answer, rr)
	}
	return dnstest.Pack(t, r)
}

func TestCacheKey(t *testing.T) {
	base := dnstest.Query("Example.COM.", dns.TypeA)
	_, bv := keyed(t, base)
	for _, tt := range []struct {
		name string
		q    func() *dns.Msg
		same bool
	}{
		{"another case of the same name shares the entry", func() *dns.Msg { return dnstest.Query("example.com.", dns.TypeA) }, true},
		{"another type does not", func() *dns.Msg { return dnstest.Query("example.com.", dns.TypeAAAA) }, false},
		{"EDNS presence does not", func() *dns.Msg { q := dnstest.Query("example.com.", dns.TypeA); q.SetEdns0(1232, false); return q }, false},
		{"the DO bit does not", func() *dns.Msg { q := dnstest.Query("example.com.", dns.TypeA); q.SetEdns0(1232, true); return q }, false},
		{"the CD bit does not", func() *dns.Msg { q := dnstest.Query("example.com.", dns.TypeA); q.CheckingDisabled = true; return q }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, v := keyed(t, tt.q())
			if got := string(v.key.Bytes()) == string(bv.key.Bytes()); got != tt.same {
				t.Errorf("same key = %v", got)
			}
		})
	}
	e1 := dnstest.Query("example.com.", dns.TypeA)
	e1.SetEdns0(1232, false)
	e2 := dnstest.Query("example.com.", dns.TypeA)
	e2.SetEdns0(1232, false)
	e2.IsEdns0().SetVersion(1)
	_, v1 := keyed(t, e1)
	_, v2 := keyed(t, e2)
	if string(v1.key.Bytes()) == string(v2.key.Bytes()) {
		t.Error("EDNS versions 0 and 1 share a key")
	}
}

func TestCacheStoreAndAnswer(t *testing.T) {
	c := New(cacheCfg(1000))
	q := dnstest.Query("www.example.", dns.TypeA)
	raw, v := keyed(t, q)
	sec := int64(time.Second)
	c.Store(&v.key, answerA(t, q, 300, 100), 0)

	t.Run("a hit lowers every TTL by the entry's age and echoes ID and question", func(t *testing.T) {
		q2 := dnstest.Query("WWW.Example.", dns.TypeA)
		q2.Id = 0xBEEF
		raw2, v2 := keyed(t, q2)
		out, res, _ := c.Answer(nil, &v2.key, raw2, &v2.View, 40*sec, false)
		if res != Hit {
			t.Fatalf("res = %v", res)
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if m.Id != 0xBEEF || m.Question[0].Name != "WWW.Example." {
			t.Errorf("header/question: %v", &m)
		}
		if m.Answer[0].Header().Ttl != 260 || m.Answer[1].Header().Ttl != 60 {
			t.Errorf("TTLs %d %d, want 260 60", m.Answer[0].Header().Ttl, m.Answer[1].Header().Ttl)
		}
	})
	t.Run("the entry lives for the smallest TTL", func(t *testing.T) {
		if _, res, _ := c.Answer(nil, &v.key, raw, &v.View, 101*sec, false); res != Miss {
			t.Errorf("res = %v after the smallest TTL", res)
		}
	})
	t.Run("an expired entry answers stale with TTL 30 within serve_stale", func(t *testing.T) {
		out, res, _ := c.Answer(nil, &v.key, raw, &v.View, 150*sec, true)
		if res != Stale {
			t.Fatalf("res = %v", res)
		}
		var m dns.Msg
		if err := m.Unpack(out); err != nil {
			t.Fatal(err)
		}
		if m.Answer[0].Header().Ttl != StaleTTL {
			t.Errorf("stale TTL %d", m.Answer[0].Header().Ttl)
		}
		if _, res, _ := c.Answer(nil, &v.key, raw, &v.View, 100*sec+int64(time.Minute)+sec, true); res != Miss {
			t.Errorf("answered stale past serve_stale")
		}
	})
	t.Run("a hit near expiry asks for one prefetch", func(t *testing.T) {
		_, _, pf := c.Answer(nil, &v.key, raw, &v.View, 95*sec, false)
		_, _, again := c.Answer(nil, &v.key, raw, &v.View, 96*sec, false)
		if !pf || again {
			t.Errorf("prefetch %v then %v, want true then false", pf, again)
		}
		c.Store(&v.key, answerA(t, q, 300, 100), 96*sec) // the refresh lands
		if _, res, pf := c.Answer(nil, &v.key, raw, &v.View, 97*sec, false); res != Hit || pf {
			t.Errorf("after refresh: %v %v", res, pf)
		}
	})
}

func TestCacheWhatIsStored(t *testing.T) {
	q := dnstest.Query("x.example.", dns.TypeA)
	soa := func(ttl, minimum uint32) dns.RR {
		return &dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns: "ns.example.", Mbox: "h.example.", Serial: 1, Refresh: 1, Retry: 1, Expire: 1, Minttl: minimum}
	}
	reply := func(rcode int, edit func(*dns.Msg)) []byte {
		r := new(dns.Msg)
		r.SetRcode(q, rcode)
		if edit != nil {
			edit(r)
		}
		return dnstest.Pack(t, r)
	}
	for _, tt := range []struct {
		name string
		resp []byte
		life time.Duration // 0: not cached
	}{
		{"NXDOMAIN lives for the SOA minimum", reply(dns.RcodeNameError, func(r *dns.Msg) { r.Ns = []dns.RR{soa(3600, 60)} }), 60 * time.Second},
		{"NODATA lives for the SOA TTL when smaller", reply(dns.RcodeSuccess, func(r *dns.Msg) { r.Ns = []dns.RR{soa(20, 60)} }), 20 * time.Second},
		{"negative answers are capped by max_negative_ttl", reply(dns.RcodeNameError, func(r *dns.Msg) { r.Ns = []dns.RR{soa(86400, 86400)} }), time.Hour},
		{"NXDOMAIN without SOA is not cached", reply(dns.RcodeNameError, nil), 0},
		{"SERVFAIL is not cached by default", reply(dns.RcodeServerFailure, nil), 0},
		{"REFUSED is not cached", reply(dns.RcodeRefused, nil), 0},
		{"a truncated answer is not cached", reply(dns.RcodeSuccess, func(r *dns.Msg) { r.Truncated = true }), 0},
		{"positive TTLs are capped by max_ttl", answerA(t, q, 1<<30), 24 * time.Hour},
		{"a zero TTL is not cached", answerA(t, q, 0), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := New(cacheCfg(100))
			raw, v := keyed(t, q)
			c.Store(&v.key, tt.resp, 0)
			_, res, _ := c.Answer(nil, &v.key, raw, &v.View, int64(tt.life)-1, false)
			if tt.life == 0 {
				if res != Miss {
					t.Errorf("cached")
				}
				return
			}
			if res != Hit {
				t.Fatalf("not cached for %v", tt.life)
			}
			if _, res, _ := c.Answer(nil, &v.key, raw, &v.View, int64(tt.life), false); res != Miss {
				t.Errorf("still fresh at %v", tt.life)
			}
		})
	}
}

func TestCacheEvictionKeepsHotEntries(t *testing.T) {
	c := New(cacheCfg(4 * cacheShards))
	hotQ := dnstest.Query("hot.example.", dns.TypeA)
	hotRaw, hot := keyed(t, hotQ)
	c.Store(&hot.key, answerA(t, hotQ, 300), 0)
	for i := 0; i < 5000; i++ {
		q := dnstest.Query(fmt.Sprintf("cold%d.example.", i), dns.TypeA)
		_, v := keyed(t, q)
		c.Store(&v.key, answerA(t, q, 300), 0)
		// The hot name is asked for between every cold store.
		if _, res, _ := c.Answer(nil, &hot.key, hotRaw, &hot.View, 1, false); res != Hit {
			t.Fatalf("the hot entry was evicted after %d cold stores", i+1)
		}
	}
	if n := c.Len(); n > 4*cacheShards {
		t.Errorf("size %d over the bound %d", n, 4*cacheShards)
	}
	if c.evictions.Load() < 5000-4*cacheShards {
		t.Errorf("only %d evictions", c.evictions.Load())
	}
}

func TestCachePurge(t *testing.T) {
	c := New(cacheCfg(1000))
	for _, n := range []string{"a.corp.example.", "b.corp.example.", "xcorp.example.", "www.test."} {
		q := dnstest.Query(n, dns.TypeA)
		_, v := keyed(t, q)
		c.Store(&v.key, answerA(t, q, 300), 0)
	}
	if got := c.Purge(wireName(t, "corp.example.")); got != 2 {
		t.Errorf("purged %d under corp.example., want 2", got)
	}
	if c.Len() != 2 {
		t.Errorf("size %d after purge", c.Len())
	}
	if got := c.Purge(wireName(t, ".")); got != 2 || c.Len() != 0 {
		t.Errorf("purge all removed %d, left %d", got, c.Len())
	}
}

func BenchmarkCacheHit(b *testing.B) {
	c := New(cacheCfg(1000))
	q := dnstest.Query("www.example.", dns.TypeA)
	raw, v := keyed(b, q)
	c.Store(&v.key, answerA(b, q, 300, 300), 0)
	out := make([]byte, 0, 512)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		v.ParseQuery(raw)
		v.key.Set(&v.View)
		out, _, _ = c.Answer(out[:0], &v.key, raw, &v.View, 1, false)
	}
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	c := New(cacheCfg(1000))
	q := dnstest.Query("www.example.", dns.TypeA)
	raw, v := keyed(t, q)
	c.Store(&v.key, answerA(t, q, 300, 300), 0)
	out := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(1000, func() {
		v.ParseQuery(raw)
		v.key.Set(&v.View)
		out, _, _ = c.Answer(out[:0], &v.key, raw, &v.View, 1, false)
	}); n != 0 {
		t.Errorf("%v allocations per hit", n)
	}
}
