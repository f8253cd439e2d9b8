package pcache

// FuzzCache is one of the hot path's fuzz targets (issue 8); its seeds live
// in testdata/fuzz/FuzzCache and in the f.Add calls below.

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// fuzzAnswer builds a backend answer seed to q.
func fuzzAnswer(t testing.TB, name string, qtype uint16, edns bool, records int) []byte {
	q := dnstest.Query(name, qtype)
	r := dnstest.BigAnswer(t, q, records)
	if edns {
		r.SetEdns0(1232, true)
		r.IsEdns0().Option = append(r.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("opt")})
	}
	return dnstest.Pack(t, r)
}

// FuzzCache stores a backend answer for one query, then asks the cache with
// a second query, some time later. Properties: no panic; a hit only for the
// same question (name ignoring case, type, class) and the same EDNS/DO/CD
// view; the hit carries the second query's ID and question bytes, keeps the
// stored answer's length and every byte but the TTLs, and no TTL grows
// (stale answers say 30).
func FuzzCache(f *testing.F) {
	mk := func(name string, qtype uint16, edns bool, id uint16) []byte {
		q := dnstest.Query(name, qtype)
		q.Id = id
		if edns {
			q.SetEdns0(1232, true)
		}
		return dnstest.Pack(f, q)
	}
	ansA := func(name string, ttls ...uint32) []byte {
		q := dnstest.Query(name, dns.TypeA)
		return answerA(f, q, ttls...)
	}
	f.Add(mk("www.example.", dns.TypeA, false, 1), ansA("www.example.", 300, 100), mk("WWW.Example.", dns.TypeA, false, 2), uint32(40), false)
	{
		// An answer with per-client options, which the entry drops.
		q := dnstest.Query("opt.example.", dns.TypeA)
		q.SetEdns0(1232, false)
		r := new(dns.Msg)
		r.SetReply(q)
		rr, _ := dns.NewRR("opt.example. 300 IN A 192.0.2.1")
		r.Answer = append(r.Answer, rr)
		r.SetEdns0(1232, false)
		r.IsEdns0().Option = append(r.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708a1a2a3a4a5a6a7a8"},
			&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e73"})
		glue, _ := dns.NewRR("ns.example. 300 IN A 192.0.2.53")
		r.Extra = append(r.Extra, glue)
		f.Add(dnstest.Pack(f, q), dnstest.Pack(f, r), dnstest.Pack(f, q), uint32(10), false)
	}
	f.Add(mk("www.example.", dns.TypeA, false, 1), ansA("www.example.", 5), mk("www.example.", dns.TypeA, false, 2), uint32(50), true)
	f.Add(mk("www.example.", dns.TypeA, false, 1), ansA("www.example.", 300), mk("www.example.", dns.TypeAAAA, false, 2), uint32(1), false)
	f.Add(mk("www.example.", dns.TypeA, false, 1), ansA("www.example.", 300), mk("www.example.", dns.TypeA, true, 2), uint32(1), false)
	f.Add(mk("big.example.", dns.TypeTXT, true, 1), fuzzAnswer(f, "big.example.", dns.TypeTXT, true, 3), mk("BIG.example.", dns.TypeTXT, true, 9), uint32(2), false)
	f.Fuzz(func(t *testing.T, q1, resp, q2 []byte, age uint32, stale bool) {
		var v1, v2 qview
		if v1.ParseQuery(q1) != nil || v2.ParseQuery(q2) != nil {
			return
		}
		// The real path stores only answers the validator accepted.
		var rv dnswire.View
		if dnswire.MatchResponse(resp, &rv, q1[dnswire.HeaderLen:v1.QEnd]) != nil {
			return
		}
		v1.key.Set(&v1.View)
		v2.key.Set(&v2.View)
		c := New(config.Cache{Size: 64, MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour,
			ServeStale: time.Minute, TemporaryFailureTTL: 5 * time.Second, Prefetch: true})
		orig := append([]byte(nil), resp...)
		c.Store(&v1.key, resp, 0)
		if !bytes.Equal(resp, orig) {
			t.Fatal("store changed the answer it was given")
		}
		// The entry is the answer without its per-client EDNS options
		// (clientopts.go): hits are compared with that.
		dnswire.StripClientOpts(&orig)
		now := int64(age%100000) * int64(time.Second)
		out, res, _ := c.Answer(make([]byte, 3, 16), &v2.key, q2, &v2.View, now, stale)
		if res == Miss {
			if len(out) != 3 {
				t.Fatal("a miss appended bytes")
			}
			return
		}
		out = out[3:]
		if res == Stale && !stale {
			t.Fatal("stale answer when none was allowed")
		}
		if v1.QType != v2.QType || v1.QClass != v2.QClass || !bytes.Equal(v1.Name(), v2.Name()) {
			t.Fatalf("answered %q/%d/%d with the entry for %q/%d/%d", v2.Name(), v2.QType, v2.QClass, v1.Name(), v1.QType, v1.QClass)
		}
		if v1.HasOPT != v2.HasOPT || v1.DO() != v2.DO() || (v1.HasOPT && byte(v1.EDNSTTL>>16) != byte(v2.EDNSTTL>>16)) ||
			v1.Flags&dnswire.FlagCD != v2.Flags&dnswire.FlagCD {
			t.Fatal("answered across EDNS version, DO or CD")
		}
		if len(out) != len(orig) {
			t.Fatalf("hit is %d bytes, stored %d", len(out), len(orig))
		}
		if binary.BigEndian.Uint16(out) != v2.ID {
			t.Fatal("hit does not carry the client's ID")
		}
		if !bytes.Equal(out[dnswire.HeaderLen:v2.QEnd], q2[dnswire.HeaderLen:v2.QEnd]) {
			t.Fatal("hit does not carry the client's question bytes")
		}
		// Every other byte is the stored one, except TTLs, which only fall.
		var sv dnswire.View
		_ = sv.ParseHeader(orig)
		ttlAt := map[int]bool{}
		off := v1.QEnd
		for i := 0; i < int(sv.ANCount)+int(sv.NSCount)+int(sv.ARCount); i++ {
			start := off
			nameEnd, _ := dnswire.SkipName(orig, off)
			var typ uint16
			off, typ, _ = dnswire.SkipRecord(orig, start)
			if typ != dnswire.TypeOPT {
				ttlAt[nameEnd+4] = true
			}
		}
		for i := v2.QEnd; i < len(out); i++ {
			if ttlAt[i] {
				was, got := binary.BigEndian.Uint32(orig[i:]), binary.BigEndian.Uint32(out[i:])
				if res == Stale && got != StaleTTL || res == Hit && got > was {
					t.Fatalf("TTL at %d went from %d to %d (%v)", i, was, got, res)
				}
				i += 3
				continue
			}
			if out[i] != orig[i] {
				t.Fatalf("byte %d changed: %#x -> %#x", i, orig[i], out[i])
			}
		}
		// Every flag is the stored answer's but RD, which echoes the
		// asking query's (RFC 1035).
		if out[2]&^1 != orig[2]&^1 || out[3] != orig[3] {
			t.Fatal("hit changed the answer's flags")
		}
		if out[2]&1 != byte(v2.Flags>>8)&1 {
			t.Fatal("hit did not echo the query's RD bit")
		}
	})
}

// TestCacheHitEchoesRD: RFC 1035 4.1.1 says RD is copied from the query
// into the response. The cache key leaves RD out, so a hit must put the
// client's RD into the stored answer's flags, as it does the ID.
func TestCacheHitEchoesRD(t *testing.T) {
	c := New(cacheCfg(100))
	q := dnstest.Query("rd.example.", dns.TypeA)
	q.RecursionDesired = true
	_, v := keyed(t, q)
	c.Store(&v.key, answerA(t, q, 300), 0)
	q2 := dnstest.Query("rd.example.", dns.TypeA)
	q2.RecursionDesired = false
	raw2, v2 := keyed(t, q2)
	out, res, _ := c.Answer(nil, &v2.key, raw2, &v2.View, 0, false)
	if res != Hit {
		t.Fatalf("res %v", res)
	}
	var m dns.Msg
	if err := m.Unpack(out); err != nil {
		t.Fatal(err)
	}
	if m.RecursionDesired {
		t.Fatal("regression (fixed bug): a cache hit answers an RD=0 query with RD=1 (the flags of the query that filled the entry): pcache/cache.go Answer copies ID and question but not RD; copy the client's RD bit (or add RD to Key.Set, as dnsdist hashes the flags)")
	}
}
