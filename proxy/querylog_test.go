package proxy

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

func TestRing(t *testing.T) {
	t.Run("a full ring refuses, and hands entries over in order", func(t *testing.T) {
		r := newRing[int](3, nil) // rounded up to 4
		for i := range 4 {
			v, pos, ok := r.reserve()
			if !ok {
				t.Fatalf("reserve %d refused", i)
			}
			*v = i
			r.publish(pos)
		}
		if _, _, ok := r.reserve(); ok {
			t.Fatal("a full ring took a fifth entry")
		}
		for i := range 4 {
			v := r.next()
			if v == nil || *v != i {
				t.Fatalf("entry %d: got %v", i, v)
			}
			r.release()
		}
		if r.next() != nil {
			t.Fatal("an empty ring gave an entry")
		}
		if _, _, ok := r.reserve(); !ok {
			t.Fatal("a drained ring refused")
		}
	})
	t.Run("concurrent producers lose nothing the ring accepted", func(t *testing.T) {
		r := newRing[int](64, nil)
		const producers, each = 8, 5000
		var accepted sync.Map
		var wg sync.WaitGroup
		for p := range producers {
			wg.Go(func() {
				for i := range each {
					if v, pos, ok := r.reserve(); ok {
						*v = p*each + i
						accepted.Store(p*each+i, true)
						r.publish(pos)
					}
				}
			})
		}
		got := map[int]bool{}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		drain := func() {
			for v := r.next(); v != nil; v = r.next() {
				if got[*v] {
					t.Errorf("entry %d delivered twice", *v)
				}
				got[*v] = true
				r.release()
			}
		}
	loop:
		for {
			select {
			case <-done:
				break loop
			default:
				drain()
			}
		}
		drain()
		n := 0
		accepted.Range(func(k, _ any) bool {
			n++
			if !got[k.(int)] {
				t.Errorf("accepted entry %d never delivered", k)
			}
			return true
		})
		if n != len(got) || n == 0 {
			t.Errorf("accepted %d, delivered %d", n, len(got))
		}
	})
}

func testQueryLog(sample int) *queryLog {
	return newQueryLog(&config.QueryLog{Socket: "/nonexistent", Sample: sample, Queue: 16, Responses: true}, slog.Default())
}

func TestQueryLogSampling(t *testing.T) {
	q := testQueryLog(10)
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	picked := 0
	for id := range 20000 {
		m.Id = uint16(id)
		m.Response = false
		qw, _ := m.Pack()
		client := netip.AddrPortFrom(netip.MustParseAddr("192.0.2.1"), uint16(1024+id%7))
		m.Response = true
		rw, _ := m.Pack()
		sq, sr := q.sampled(qw, client), q.sampled(rw, client)
		if sq != sr {
			t.Fatalf("id %d: query sampled %v, its response %v", id, sq, sr)
		}
		if sq {
			picked++
		}
	}
	if picked < 1600 || picked > 2400 {
		t.Errorf("sample 10 picked %d of 20000", picked)
	}
	if !testQueryLog(1).sampled([]byte{}, netip.AddrPort{}) {
		t.Error("sample 1 must log everything")
	}
}

func TestQueryLogQueuing(t *testing.T) {
	client := netip.MustParseAddrPort("[2001:db8::7]:5353")
	server := netip.MustParseAddrPort("[2001:db8::53]:53")
	m := new(dns.Msg)
	m.SetQuestion("quic.example.", dns.TypeAAAA)
	wire, _ := m.Pack()

	t.Run("a full queue drops and counts, oversize messages too", func(t *testing.T) {
		q := testQueryLog(1)
		for range 20 {
			q.query(dnswire.UDP, client, server, wire)
		}
		q.query(dnswire.TCP, client, server, make([]byte, maxLoggedMsg+1))
		if got := q.dropFull.Load(); got != 4 {
			t.Errorf("dropped %d as queue_full, want 4 (20 into 16 slots)", got)
		}
		if got := q.dropBig.Load(); got != 1 {
			t.Errorf("dropped %d as too_big, want 1", got)
		}
	})
	t.Run("queuing a message allocates nothing", func(t *testing.T) {
		q := testQueryLog(1)
		run := func() {
			q.query(dnswire.UDP, client, server, wire)
			q.response(dnswire.UDP, client, server, wire)
			for e := q.q.next(); e != nil; e = q.q.next() {
				q.q.release()
			}
		}
		run()
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("%.1f allocations per logged query and response", n)
		}
	})
	t.Run("a frame carries the family, protocol, addresses and message", func(t *testing.T) {
		q := testQueryLog(1)
		q.query(dnswire.DoQ, client, server, wire)
		e := q.q.next()
		frame, err := q.frame(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeTap(t, frame)
		if got.typ != dnstap.Message_CLIENT_QUERY || got.proto != socketProtocolDoQ || got.client != client || got.server != server {
			t.Errorf("frame: %+v", got)
		}
		if got.dns.Question[0].Name != "quic.example." {
			t.Errorf("message: %v", got.dns)
		}
	})
	t.Run("off costs nothing", func(t *testing.T) {
		var q *queryLog
		if n := testing.AllocsPerRun(1000, func() { q.query(dnswire.UDP, client, server, wire); q.response(dnswire.UDP, client, server, wire) }); n != 0 {
			t.Errorf("%.1f allocations with the log off", n)
		}
	})
}

// BenchmarkQueryLogEnqueue is the query path's cost of logging a query and
// its response (the writer is left out: it runs on its own goroutine).
func BenchmarkQueryLogEnqueue(b *testing.B) {
	client := netip.MustParseAddrPort("192.0.2.7:5353")
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	wire, _ := m.Pack()
	q := newQueryLog(&config.QueryLog{Socket: "/nonexistent", Sample: 1, Queue: 4096, Responses: true}, slog.Default())
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.query(dnswire.UDP, client, netip.AddrPort{}, wire)
		q.response(dnswire.UDP, client, netip.AddrPort{}, wire)
		if i%1024 == 0 {
			for e := q.q.next(); e != nil; e = q.q.next() {
				q.q.release()
			}
		}
	}
}
