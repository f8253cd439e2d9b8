package proxy

// Fuzz targets for the hot path's wire handling (issue 8). Each states the
// property it checks; seeds live in testdata/fuzz/<Target>/ and in the f.Add
// calls below. `make fuzz FUZZTIME=60s` runs each for that long; `make
// fuzz-short` runs each for a few seconds, as `make test` does.
//
// FuzzParseQuery (dnswire/wire_test.go) covers the query parser against miekg/dns.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"

	"github.com/miekg/dns"
)

// fuzzQuery builds a query seed with optional EDNS.
func fuzzQuery(t testing.TB, name string, qtype uint16, edns bool) []byte {
	q := dnstest.Query(name, qtype)
	if edns {
		q.SetEdns0(1232, true)
	}
	return dnstest.Pack(t, q)
}

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
		// A target is written into the corpus of the package that owns it.
		dir := filepath.Join("testdata", "fuzz", target)
		if target == "FuzzParseQuery" {
			dir = filepath.Join("dnswire", "testdata", "fuzz", target)
		}
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
	cls := dnstest.Pack(t, &dns.Msg{MsgHdr: dns.MsgHdr{Id: 7}, Question: []dns.Question{{Name: "x.", Qtype: dns.TypeA, Qclass: 0xFE}}})
	ev := dnstest.Query("v.example.", dns.TypeA)
	ev.SetEdns0(1232, false)
	ev.IsEdns0().SetVersion(3)
	ev.IsEdns0().Option = append(ev.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65500, Data: []byte{1, 2}})
	for i, b := range [][]byte{q, loop, fwd, long, opc, cls, dnstest.Pack(t, ev)} {
		write("FuzzParseQuery", fmt.Sprintf("seed-%d", i), b)
	}
	write("FuzzMatchResponse", "seed-edns-truncate", q, fuzzAnswer(t, "www.example.", dns.TypeA, true, 20), uint16(512))
	write("FuzzMatchResponse", "seed-wrong-question", q, fuzzAnswer(t, "other.example.", dns.TypeA, false, 1), uint16(512))
}
