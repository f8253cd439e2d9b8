package proxy

// Fuzz targets for the hot path's wire handling (issue 8). Each states the
// property it checks; seeds live in testdata/fuzz/<Target>/ and in the f.Add
// calls below. `make fuzz FUZZTIME=60s` runs each for that long; `make
// fuzz-short` runs each for a few seconds, as `make test` does.
//
// FuzzParseQuery (wire_test.go) covers the query parser against miekg/dns.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// fuzzQuery builds a query seed with optional EDNS.
func fuzzQuery(t testing.TB, name string, qtype uint16, edns bool) []byte {
	q := query(name, qtype)
	if edns {
		q.SetEdns0(1232, true)
	}
	return pack(t, q)
}

// fuzzAnswer builds a backend answer seed to q.
func fuzzAnswer(t testing.TB, name string, qtype uint16, edns bool, records int) []byte {
	q := query(name, qtype)
	r := bigAnswer(t, q, records)
	if edns {
		r.SetEdns0(1232, true)
		r.IsEdns0().Option = append(r.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("opt")})
	}
	return pack(t, r)
}

// FuzzMatchResponse feeds a query and an arbitrary "backend answer" to the
// response validator and, when it accepts, to the truncation used for small
// client buffers. Properties: no panic; an accepted answer is a response
// carrying exactly the query's question (ignoring case) or is header-only
// and not NOERROR/NXDOMAIN; a truncated answer fits the limit, has TC set,
// no answer or authority records, the question intact and at most the OPT
// record, which is a well-formed record ending exactly at the new length.
func FuzzMatchResponse(f *testing.F) {
	for _, s := range []struct {
		name  string
		qtype uint16
		edns  bool
		n     int
	}{
		{"big.example.", dns.TypeTXT, false, 30},
		{"big.example.", dns.TypeTXT, true, 30},
		{"Case.Example.", dns.TypeA, false, 1},
		{"x.", dns.TypeMX, true, 0},
	} {
		f.Add(fuzzQuery(f, s.name, s.qtype, s.edns), fuzzAnswer(f, s.name, s.qtype, s.edns, s.n), uint16(512))
		f.Add(fuzzQuery(f, s.name, s.qtype, s.edns), fuzzAnswer(f, s.name, s.qtype, s.edns, s.n), uint16(1232))
	}
	formerr := []byte{0x12, 0x34, 0x81, 0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0}
	f.Add(fuzzQuery(f, "a.", dns.TypeA, true), formerr, uint16(12))
	f.Fuzz(func(t *testing.T, q, resp []byte, limit uint16) {
		var qv msgView
		if qv.ParseQuery(q) != nil {
			return
		}
		question := q[dnswire.HeaderLen:qv.QEnd]
		orig := append([]byte(nil), resp...)
		var v msgView
		if dnswire.MatchResponse(resp, &v.View, question) != nil {
			return
		}
		if !bytes.Equal(resp, orig) {
			t.Fatal("matchResponse changed the answer")
		}
		if binary.BigEndian.Uint16(resp[2:])&dnswire.FlagQR == 0 {
			t.Fatal("accepted an answer without QR")
		}
		switch qd := binary.BigEndian.Uint16(resp[4:]); qd {
		case 0:
			if rc := v.Rcode(); rc == dnswire.RcodeNoError || rc == dnswire.RcodeNXDomain {
				t.Fatalf("accepted a header-only rcode %d", rc)
			}
			if v.QEnd != dnswire.HeaderLen {
				t.Fatalf("header-only answer: qEnd %d", v.QEnd)
			}
		case 1:
			if v.QEnd != qv.QEnd || !dnswire.EqualFold(resp[dnswire.HeaderLen:v.QEnd], question) {
				t.Fatalf("accepted another question: %x for %x", resp[dnswire.HeaderLen:v.QEnd], question)
			}
		default:
			t.Fatalf("accepted QDCOUNT %d", qd)
		}

		lim := int(limit)
		n := dnswire.TruncateTo(resp, &v.View, lim)
		if n == 0 {
			return
		}
		if n > lim || n > len(resp) || n < v.QEnd {
			t.Fatalf("truncated to %d bytes: limit %d, answer %d, question ends at %d", n, lim, len(resp), v.QEnd)
		}
		out := resp[:n]
		var tv msgView
		if tv.ParseHeader(out) != nil {
			t.Fatal("truncated answer has no header")
		}
		if tv.Flags&dnswire.FlagTC == 0 || tv.ANCount != 0 || tv.NSCount != 0 || tv.ARCount > 1 {
			t.Fatalf("truncated header: flags %#x an %d ns %d ar %d", tv.Flags, tv.ANCount, tv.NSCount, tv.ARCount)
		}
		if tv.Flags&^dnswire.FlagTC != v.Flags&^dnswire.FlagTC || tv.ID != v.ID {
			t.Fatal("truncation changed the ID or flags other than TC")
		}
		if !bytes.Equal(out[dnswire.HeaderLen:v.QEnd], orig[dnswire.HeaderLen:v.QEnd]) {
			t.Fatal("truncation changed the question")
		}
		if tv.ARCount == 1 {
			end, typ, ok := dnswire.SkipRecord(out, v.QEnd)
			if !ok || typ != dnswire.TypeOPT || end != n || out[v.QEnd] != 0 {
				t.Fatalf("kept additional record is not a whole OPT: ok %v type %d end %d of %d", ok, typ, end, n)
			}
		} else if n != v.QEnd {
			t.Fatalf("no OPT kept but %d bytes after the question", n-v.QEnd)
		}
	})
}

// header12 is a bare DNS header with an ID, flags and QDCOUNT.
func header12(id, flags, qd uint16) []byte {
	b := make([]byte, dnswire.HeaderLen)
	binary.BigEndian.PutUint16(b, id)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], qd)
	return b
}

// TestWriteFuzzSeeds writes the f.Add seeds above as committed corpus
// files when ANYFRONT_WRITE_SEEDS=1; otherwise it does nothing.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ANYFRONT_WRITE_SEEDS") != "1" {
		t.Skip("set ANYFRONT_WRITE_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(target, name string, vals ...any) {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch x := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", x)
			case string:
				fmt.Fprintf(&b, "string(%q)\n", x)
			case uint16:
				fmt.Fprintf(&b, "uint16(%d)\n", x)
			case uint32:
				fmt.Fprintf(&b, "uint32(%d)\n", x)
			case bool:
				fmt.Fprintf(&b, "bool(%v)\n", x)
			}
		}
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q := fuzzQuery(t, "www.example.", dns.TypeA, true)
	// Hostile queries for the parser: pointer loop, forward pointer, long
	// label, long name, unknown opcode/class, unknown EDNS version.
	loop := append(append([]byte{}, q[:dnswire.HeaderLen]...), 0xC0, 12, 0, 1, 0, 1)
	fwd := append(append([]byte{}, q[:dnswire.HeaderLen]...), 0xC0, 20, 0, 1, 0, 1, 0, 0, 3, 'c', 'o', 'm', 0)
	long := append(append([]byte{}, q[:dnswire.HeaderLen]...), bytes.Repeat(append([]byte{63}, bytes.Repeat([]byte{'a'}, 63)...), 5)...)
	long = append(long, 0, 0, 1, 0, 1)
	opc := append([]byte{}, q...)
	opc[2] |= 5 << 3
	cls := pack(t, &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}, Question: []dns.Question{{Name: "x.", Qtype: dns.TypeA, Qclass: 0xFE}}})
	ev := query("v.example.", dns.TypeA)
	ev.SetEdns0(1232, false)
	ev.IsEdns0().SetVersion(3)
	ev.IsEdns0().Option = append(ev.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65500, Data: []byte{1, 2}})
	for i, b := range [][]byte{q, loop, fwd, long, opc, cls, pack(t, ev)} {
		write("FuzzParseQuery", fmt.Sprintf("seed-%d", i), b)
	}
	write("FuzzMatchResponse", "seed-edns-truncate", q, fuzzAnswer(t, "www.example.", dns.TypeA, true, 20), uint16(512))
	write("FuzzMatchResponse", "seed-wrong-question", q, fuzzAnswer(t, "other.example.", dns.TypeA, false, 1), uint16(512))
	fr := append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	write("FuzzTCPReader", "seed-two-frames", append(append([]byte{}, fr...), fr...))
	write("FuzzTCPReader", "seed-prefix-longer-than-data", append([]byte{0x10, 0}, q...))
	write("FuzzTCPReader", "seed-zero-length-after-query", append(append([]byte{}, fr...), 0, 0))
	write("FuzzTCPReader", "seed-notimp-and-formerr", append(append([]byte{}, fr...), append([]byte{0, 12}, header12(9, 5<<11, 0)...)...))
}

// FuzzTCPReader feeds arbitrary bytes, as one client's TCP stream, to the
// TCP front end's length-prefixed reader (tcpFront.handle) over a real
// loopback connection, then half-closes. The only backend refuses, so every
// valid query is answered SERVFAIL at once. Properties: no panic; handle
// returns within 2 s of the half-close; every frame sent back is a DNS
// response with QR set; there are no more of them than whole frames sent and
// no fewer than valid queries among them (the first 64, the per-connection
// bound).
func FuzzTCPReader(f *testing.F) {
	q := fuzzQuery(f, "www.example.", dns.TypeA, false)
	frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	f.Add(frame)
	f.Add(append(append([]byte{}, frame...), frame...))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xFF, 0xFF, 1, 2, 3})
	f.Add(frame[:len(frame)-1])
	f.Add(append(append([]byte{}, frame...), 0, 12, 0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0))

	cfg, err := config.Parse("tcp.yaml", []byte(`proxy:
  timeout: 200ms
  retries: 1
  tcp: {idle_timeout: 2s, max_inflight_per_conn: 4, max_queries_per_conn: 64}
pools:
  default:
    backends: [{name: a, address: "127.0.0.1:1"}]
`))
	if err != nil {
		f.Fatal(err)
	}
	store, err := state.New()
	if err != nil {
		f.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		f.Fatal(err)
	}
	p, err := New(cfg, Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	pools, backends, err := p.readStore()
	if err != nil {
		f.Fatal(err)
	}
	p.rebuild(pools, backends)
	front := newTCPFront(p, cfg.Proxy.TCP)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })

	f.Fuzz(func(t *testing.T, stream []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			front.handle(server, netip.MustParseAddrPort("127.0.0.1:5353"))
			server.Close()
		}()
		go func() {
			_, _ = client.Write(stream)
			_ = client.(*net.TCPConn).CloseWrite()
		}()
		whole, valid := 0, 0
		for b := stream; len(b) >= 2 && whole < 64; {
			l := int(binary.BigEndian.Uint16(b))
			if l == 0 || len(b) < 2+l {
				break
			}
			whole++
			var v msgView
			if v.ParseQuery(b[2:2+l]) == nil {
				valid++
			}
			b = b[2+l:]
		}
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		frames := 0
		for {
			var lb [2]byte
			if _, err := io.ReadFull(client, lb[:]); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the connection was not closed within 5 s of the half-close")
				}
				break
			}
			msg := make([]byte, binary.BigEndian.Uint16(lb[:]))
			if _, err := io.ReadFull(client, msg); err != nil {
				t.Fatalf("answer frame cut: %v", err)
			}
			frames++
			if len(msg) < dnswire.HeaderLen || msg[2]&0x80 == 0 {
				t.Fatalf("answer is not a DNS response: %x", msg)
			}
		}
		if frames > whole || frames < valid {
			t.Fatalf("%d answers to %d whole frames, %d of them valid queries", frames, whole, valid)
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("handle did not return after the client closed")
		}
	})
}
