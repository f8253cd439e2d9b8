package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
)

// BenchmarkShardMiss is the proxy's own work for one forwarded UDP query,
// without a socket: a shard takes the query (validation, policy, in-flight
// slot, timers), then the backend's answer (match, RTT and latency
// estimates, top observers) as its loops would, so the fault-free cost of
// query fate is measured apart from the kernel's share, which dwarfs it
// in `make bench`. The proxy runs (its loops idle) over two real unbound.
func BenchmarkShardMiss(b *testing.B) {
	testlab.RequireBinary(b, "unbound")
	l := startLab(b, 2, "", "")
	s := l.p.shards[0]
	ln := l.p.udpLns[0]
	src := udpsock.AddrFrom(netip.MustParseAddrPort("127.0.0.1:40000"), ln.v6)
	queries := make([][]byte, 1024)
	for i := range queries {
		queries[i] = dnstest.Pack(b, dnstest.Query(fmt.Sprintf("n%d.demo.test.", i), dns.TypeA))
	}
	var v, av, qv msgView
	msg := make([]byte, 0, dnswire.MaxMessage)
	out := make([]byte, 0, dnswire.MaxMessage)
	wire := make([]byte, 0, dnswire.MaxMessage)
	ans := make([]byte, 0, dnswire.MaxMessage)
	var client udpsock.Addr
	lost := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg = append(msg[:0], queries[i%len(queries)]...)
		u, w, o := s.handleQuery(ln, msg, &src, &v, out[:0], wire[:0], s.p.now())
		if u == nil {
			b.Fatalf("query %d not forwarded: answered %v", i, dnstest.Unpack(b, o))
		}
		// The backend's answer: the forwarded query with QR set.
		ans = append(ans[:0], w...)
		binary.BigEndian.PutUint16(ans[2:], binary.BigEndian.Uint16(ans[2:])|dnswire.FlagQR)
		if _, a := s.handleAnswer(ans, u.addr, &av, &qv, &client, out[:0], s.p.now()); a == nil {
			// About once in a million an answer is not taken. The shard's
			// timeout loop runs beside this one and may fire the slot's
			// hedge between the two calls (the likely cause, not proven);
			// what is counted below says which path refused it.
			lost++
		}
	}
	if lost > b.N/1000 {
		b.Fatalf("%d of %d answers not taken (late %d, unexpected %d, hedges %d)", lost, b.N,
			s.p.stats.LateAnswers.Load(), s.p.stats.UnexpectedAnswers.Load(), s.p.stats.Hedges.Load())
	}
}
