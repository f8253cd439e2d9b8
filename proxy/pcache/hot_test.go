package pcache

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/miekg/dns"
)

func TestHottest(t *testing.T) {
	c := New(cacheCfg(1000))
	sec := int64(time.Second)
	keys := map[string]*qview{}
	for i, n := range []string{"a.example.", "b.example.", "c.example.", "d.example."} {
		q := dnstest.Query(n, dns.TypeA)
		raw, v := keyed(t, q)
		keys[n] = v
		c.Store(&v.key, answerA(t, q, 100), 0)
		for j := 0; j < i; j++ { // a: 0 hits, b: 1, c: 2, d: 3
			c.Answer(nil, &v.key, raw, &v.View, sec, false)
		}
	}
	hottest := func(n int, decay, minRate float32, keep func(*Entry) bool) (names []string, rates []float32) {
		c.Hottest(n, decay, minRate, keep, func(e *Entry) {
			q, ok := ParseKey(e.Key)
			if !ok {
				t.Fatalf("key %q does not parse", e.Key)
			}
			names = append(names, string(q.Name[1:2]))
			rates = append(rates, e.Rate)
		})
		return names, rates
	}
	all := func(*Entry) bool { return true }

	t.Run("the hottest first, at most n, none below the minimum rate", func(t *testing.T) {
		names, rates := hottest(2, 1, 0.5, all)
		if !slices.Equal(names, []string{"d", "c"}) || !slices.Equal(rates, []float32{3, 2}) {
			t.Errorf("got %v %v, want [d c] [3 2]", names, rates)
		}
	})
	t.Run("a rate decays without hits, and hits from elsewhere count", func(t *testing.T) {
		if !c.AddHits(&keys["a.example."].key, 8) {
			t.Fatal("AddHits found no entry for a cached key")
		}
		names, rates := hottest(10, 0.5, 0.5, all)
		if !slices.Equal(names, []string{"a", "d", "c", "b"}) || !slices.Equal(rates, []float32{8, 1.5, 1, 0.5}) {
			t.Errorf("got %v %v, want [a d c b] [8 1.5 1 0.5]", names, rates)
		}
	})
	t.Run("keep leaves entries out before they take a slot", func(t *testing.T) {
		names, _ := hottest(1, 1, 0, func(e *Entry) bool { q, _ := ParseKey(e.Key); return q.Name[1] != 'a' })
		if !slices.Equal(names, []string{"d"}) {
			t.Errorf("got %v, want [d]", names)
		}
	})
	t.Run("AddHits without an entry", func(t *testing.T) {
		var k Key
		if !k.SetQuestion("\x01z\x07example\x00", dns.TypeA, dns.ClassINET, false, false, false) || c.AddHits(&k, 1) {
			t.Error("AddHits found an entry for a name never cached")
		}
	})
	t.Run("SetQuestion makes the key Set makes", func(t *testing.T) {
		for _, edns := range []bool{false, true} {
			q := dnstest.Query("Mixed.Example.", dns.TypeAAAA)
			if edns {
				q.SetEdns0(1232, true)
			}
			_, v := keyed(t, q)
			var k Key
			k.SetQuestion("\x05mixed\x07example\x00", dns.TypeAAAA, dns.ClassINET, edns, edns, false)
			if string(k.Bytes()) != string(v.key.Bytes()) || k.h != v.key.h {
				t.Errorf("EDNS %v: %q, want %q", edns, k.Bytes(), v.key.Bytes())
			}
		}
	})
}

// An entry's Until is its expiry, or with prefetch where the prefetch
// window opens.
func TestHottestUntil(t *testing.T) {
	for _, prefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefetch %v", prefetch), func(t *testing.T) {
			cfg := cacheCfg(100)
			cfg.Prefetch = prefetch
			c := New(cfg)
			q := dnstest.Query("x.example.", dns.TypeA)
			raw, v := keyed(t, q)
			c.Store(&v.key, answerA(t, q, 100), 0)
			c.Answer(nil, &v.key, raw, &v.View, 0, false)
			want := 100 * int64(time.Second)
			if prefetch {
				want -= 10 * int64(time.Second)
			}
			var got []int64
			c.Hottest(1, 1, 0, func(*Entry) bool { return true }, func(e *Entry) { got = append(got, e.Until) })
			if !slices.Equal(got, []int64{want}) {
				t.Errorf("Until %v, want [%d]", got, want)
			}
		})
	}
}
