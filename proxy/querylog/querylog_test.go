package querylog

import (
	"log/slog"
	"net/netip"
	"testing"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

func testQueryLog(sample int) *Log {
	return New(&config.QueryLog{Socket: "/nonexistent", Sample: sample, Queue: 16, Responses: true}, slog.Default())
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
			q.Query(dnswire.UDP, client, server, wire)
		}
		q.Query(dnswire.TCP, client, server, make([]byte, MaxMsg+1))
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
			q.Query(dnswire.UDP, client, server, wire)
			q.Response(dnswire.UDP, client, server, wire)
			for e := q.q.Next(); e != nil; e = q.q.Next() {
				q.q.Release()
			}
		}
		run()
		if n := testing.AllocsPerRun(1000, run); n != 0 {
			t.Errorf("%.1f allocations per logged query and response", n)
		}
	})
	t.Run("a frame carries the family, protocol, addresses and message", func(t *testing.T) {
		q := testQueryLog(1)
		q.Query(dnswire.DoQ, client, server, wire)
		e := q.q.Next()
		frame, err := q.frame(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		got := decodeTap(t, frame)
		if got.typ != dnstap.Message_CLIENT_QUERY || got.proto != SocketProtocolDoQ || got.client != client || got.server != server {
			t.Errorf("frame: %+v", got)
		}
		if got.dns.Question[0].Name != "quic.example." {
			t.Errorf("message: %v", got.dns)
		}
	})
	t.Run("off costs nothing", func(t *testing.T) {
		var q *Log
		if n := testing.AllocsPerRun(1000, func() { q.Query(dnswire.UDP, client, server, wire); q.Response(dnswire.UDP, client, server, wire) }); n != 0 {
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
	q := New(&config.QueryLog{Socket: "/nonexistent", Sample: 1, Queue: 4096, Responses: true}, slog.Default())
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Query(dnswire.UDP, client, netip.AddrPort{}, wire)
		q.Response(dnswire.UDP, client, netip.AddrPort{}, wire)
		if i%1024 == 0 {
			for e := q.q.Next(); e != nil; e = q.q.Next() {
				q.q.Release()
			}
		}
	}
}

func TestSame(t *testing.T) {
	a := &config.QueryLog{Socket: "/run/tap.sock", Sample: 1, Queue: 16, Line: 3}
	moved, other := *a, *a
	moved.Line = 40
	other.Sample = 2
	for _, c := range []struct {
		name string
		x, y *config.QueryLog
		want bool
	}{
		{"the same section moved in the file", a, &moved, true},
		{"another sample rate", a, &other, false},
		{"turned off", a, nil, false},
		{"off both times", nil, nil, true},
	} {
		if got := Same(c.x, c.y); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
