package proxy

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// FuzzECS feeds arbitrary queries and backend answers to the ECS wire edits.
// Properties: no panic; a query left alone goes out byte for byte as it
// came; an edited one still parses with the same question, one OPT and
// exactly the ECS option planned, and grew by at most ecsMaxGrowth; the
// cache key stays inside its buffer; an answer cut back by stripECS keeps
// every record whole and its ARCOUNT in step.
func FuzzECS(f *testing.F) {
	f.Add(ecsQuery(f, 0, false, ""), []byte{}, byte(1))
	f.Add(ecsQuery(f, 4096, true, ""), []byte{}, byte(3))
	f.Add(ecsQuery(f, 4096, true, "203.0.113.0/24"), []byte{}, byte(2))
	f.Add(ecsQuery(f, 1232, false, "2001:db8::/48"), []byte{}, byte(7))
	q := ecsQuery(f, 4096, true, "")
	var v msgView
	if err := v.parseQuery(q); err != nil {
		f.Fatal(err)
	}
	pol := ecsPolicy{add: true, v4: 24}
	v.planECS(&pol, q, netip.MustParseAddr("192.0.2.1"))
	qm := new(dns.Msg)
	if err := qm.Unpack(appendForward(nil, q, &v)); err != nil {
		f.Fatal(err)
	}
	f.Add(q, ecsAnswerSeed(f, qm, 24), byte(1))
	f.Add(q, ecsAnswerSeed(f, qm, 0), byte(0))
	// Found by fuzzing (testdata/fuzz is not committed for this target):
	// counts that lie about the records, and an OPT-typed record with a
	// non-root owner; an OPT appended behind either is never found.
	f.Add([]byte("00\x010\x00\x01000000\x000000"), []byte{}, byte(7))
	f.Add([]byte("00\x010\x00\x01\x00\x00\x00\x00\x00\x01\x000000\x03000\x00\x00)000000\x00\x040000"), []byte{}, byte(1))

	f.Fuzz(func(t *testing.T, q, resp []byte, flags byte) {
		pol := ecsPolicy{add: flags&1 != 0, override: flags&2 != 0, v4: flags >> 3 & 31, v6: flags >> 1}
		client := netip.MustParseAddr("192.0.2.77")
		if flags&4 != 0 {
			client = netip.MustParseAddr("2001:db8:ffff:ffff::1")
		}
		var v msgView
		if v.parseQuery(q) != nil {
			return
		}
		v.planECS(&pol, q, client)
		v.key.set(&v)
		if v.key.n > len(v.key.buf) || v.key.base > v.key.n {
			t.Fatalf("key length %d/%d past its buffer", v.key.base, v.key.n)
		}
		out := appendForward(nil, q, &v)
		if v.ecs.mode == ecsNone {
			if !bytes.Equal(out, q) {
				t.Fatal("a query with nothing to do was changed")
			}
		} else {
			if len(out) > len(q)+ecsMaxGrowth {
				t.Fatalf("grew by %d bytes, at most %d", len(out)-len(q), ecsMaxGrowth)
			}
			var fv msgView
			if err := fv.parseQuery(out); err != nil || !bytes.Equal(fv.name(), v.name()) || !fv.hasOPT {
				t.Fatalf("edited query: %v, name %q, OPT %v", err, fv.name(), fv.hasOPT)
			}
			s, e, _, ok := findECSOption(out, fv.optOff)
			if !ok || !bytes.Equal(out[s+4:e], v.ecs.data[:v.ecs.dlen]) {
				t.Fatalf("edited query's ECS % x (ok %v), want % x", out[s:e], ok, v.ecs.data[:v.ecs.dlen])
			}
		}
		var rv msgView
		if matchResponse(resp, &rv, q[headerLen:v.qEnd]) != nil {
			return
		}
		for _, mode := range []ecsMode{ecsAddOPT, ecsAddOption, ecsReplace} {
			r, w := bytes.Clone(resp), rv
			n, _, ok := stripECS(r, &w, mode)
			if n > len(r) || n < w.qEnd {
				t.Fatalf("mode %d: length %d of %d", mode, n, len(r))
			}
			if !ok {
				continue
			}
			var check msgView
			if err := matchResponse(r[:n], &check, q[headerLen:v.qEnd]); err != nil || check.arcount != w.arcount {
				t.Fatalf("mode %d: cut answer %v, ARCOUNT %d vs view %d", mode, err, check.arcount, w.arcount)
			}
		}
	})
}

func ecsAnswerSeed(f *testing.F, q *dns.Msg, scope uint8) []byte {
	r := new(dns.Msg).SetReply(q)
	r.SetEdns0(1232, false)
	for _, o := range q.IsEdns0().Option {
		if e, ok := o.(*dns.EDNS0_SUBNET); ok {
			echo := *e
			echo.SourceScope = scope
			r.IsEdns0().Option = append(r.IsEdns0().Option, &echo)
		}
	}
	return pack(f, r)
}
