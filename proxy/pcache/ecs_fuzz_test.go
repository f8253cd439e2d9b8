package pcache

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"

	"github.com/miekg/dns"
)

// FuzzECS feeds arbitrary queries and backend answers to the ECS wire edits.
// Properties: no panic; a query left alone goes out byte for byte as it
// came; an edited one still parses with the same question, one OPT and
// exactly the ECS option planned, and grew by at most ecsMaxGrowth; the
// cache key stays inside its buffer; an answer cut back by stripECS keeps
// every record whole and its ARCOUNT in step.
func FuzzECS(f *testing.F) {
	f.Add(dnstest.ECSQuery(f, 0, false, ""), []byte{}, byte(1))
	f.Add(dnstest.ECSQuery(f, 4096, true, ""), []byte{}, byte(3))
	f.Add(dnstest.ECSQuery(f, 4096, true, "203.0.113.0/24"), []byte{}, byte(2))
	f.Add(dnstest.ECSQuery(f, 1232, false, "2001:db8::/48"), []byte{}, byte(7))
	q := dnstest.ECSQuery(f, 4096, true, "")
	var v qview
	if err := v.ParseQuery(q); err != nil {
		f.Fatal(err)
	}
	pol := dnswire.ECSPolicy{Add: true, V4: 24}
	v.PlanECS(&pol, q, netip.MustParseAddr("192.0.2.1"))
	qm := new(dns.Msg)
	if err := qm.Unpack(dnswire.AppendForward(nil, q, &v.View)); err != nil {
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
		pol := dnswire.ECSPolicy{Add: flags&1 != 0, Override: flags&2 != 0, V4: flags >> 3 & 31, V6: flags >> 1}
		client := netip.MustParseAddr("192.0.2.77")
		if flags&4 != 0 {
			client = netip.MustParseAddr("2001:db8:ffff:ffff::1")
		}
		var v qview
		if v.ParseQuery(q) != nil {
			return
		}
		v.PlanECS(&pol, q, client)
		v.key.Set(&v.View)
		if v.key.n > len(v.key.buf) || v.key.base > v.key.n {
			t.Fatalf("key length %d/%d past its buffer", v.key.base, v.key.n)
		}
		out := dnswire.AppendForward(nil, q, &v.View)
		if v.ECS.Mode == dnswire.ECSNone {
			if !bytes.Equal(out, q) {
				t.Fatal("a query with nothing to do was changed")
			}
		} else {
			if len(out) > len(q)+dnswire.ECSMaxGrowth {
				t.Fatalf("grew by %d bytes, at most %d", len(out)-len(q), dnswire.ECSMaxGrowth)
			}
			var fv dnswire.View
			if err := fv.ParseQuery(out); err != nil || !bytes.Equal(fv.Name(), v.Name()) || !fv.HasOPT {
				t.Fatalf("edited query: %v, name %q, OPT %v", err, fv.Name(), fv.HasOPT)
			}
			s, e, _, ok := dnswire.FindECSOption(out, fv.OPTOff)
			if !ok || !bytes.Equal(out[s+4:e], v.ECS.Data[:v.ECS.DLen]) {
				t.Fatalf("edited query's ECS % x (ok %v), want % x", out[s:e], ok, v.ECS.Data[:v.ECS.DLen])
			}
		}
		var rv dnswire.View
		if dnswire.MatchResponse(resp, &rv, q[dnswire.HeaderLen:v.QEnd]) != nil {
			return
		}
		for _, mode := range []dnswire.ECSMode{dnswire.ECSAddOPT, dnswire.ECSAddOption, dnswire.ECSReplace} {
			r, w := bytes.Clone(resp), rv
			n, _, ok := dnswire.StripECS(r, &w, mode)
			if n > len(r) || n < w.QEnd {
				t.Fatalf("mode %d: length %d of %d", mode, n, len(r))
			}
			if !ok {
				continue
			}
			var check dnswire.View
			if err := dnswire.MatchResponse(r[:n], &check, q[dnswire.HeaderLen:v.QEnd]); err != nil || check.ARCount != w.ARCount {
				t.Fatalf("mode %d: cut answer %v, ARCOUNT %d vs view %d", mode, err, check.ARCount, w.ARCount)
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
	return dnstest.Pack(f, r)
}
