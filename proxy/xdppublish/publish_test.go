package xdppublish

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf/xdpanswer"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/pcache"
)

// fakeAnswers records what the publisher hands the XDP map. The XDP side is
// tested for real in ebpf/ and in the lab test; this checks the choice.
type fakeAnswers struct {
	mu    sync.Mutex
	syncs [][]xdpanswer.Answer
	hits  map[xdpanswer.AnswerKey]uint64
	acl   []netip.Prefix
}

func (f *fakeAnswers) SyncAnswers(a []xdpanswer.Answer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := make([]xdpanswer.Answer, len(a))
	for i := range a {
		cp[i] = a[i]
		cp[i].Sections = slices.Clone(a[i].Sections)
	}
	f.syncs = append(f.syncs, cp)
	return nil
}

func (f *fakeAnswers) AnswerHits() (map[xdpanswer.AnswerKey]uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps(f.hits), nil
}

func maps(m map[xdpanswer.AnswerKey]uint64) map[xdpanswer.AnswerKey]uint64 {
	out := map[xdpanswer.AnswerKey]uint64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (f *fakeAnswers) SetACL(p []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acl = slices.Clone(p)
	return nil
}

func (f *fakeAnswers) last() []xdpanswer.Answer {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.syncs) == 0 {
		return nil
	}
	return f.syncs[len(f.syncs)-1]
}

func names(as []xdpanswer.Answer) []string {
	var out []string
	for _, a := range as {
		out = append(out, fmt.Sprintf("%s/%d", wireToText(a.Key.Name), a.Key.Type))
	}
	return out
}

func wireToText(w string) string {
	s, _, err := dns.UnpackDomainName([]byte(w), 0)
	if err != nil {
		return "?" + err.Error()
	}
	return s
}

// rig is a publisher over one cache and a fake XDP map, not running: the
// test runs one round at a time.
type rig struct {
	c   *pcache.Cache
	x   *Publisher
	pub *fakeAnswers
	src Source
	now int64 // the clock of the cache and the publisher
}

func newRig(t *testing.T, entries int) *rig {
	return newRigCfg(t, config.Cache{Size: 1000, XDPEntries: entries, Prefetch: true, MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour})
}

func newRigCfg(t *testing.T, cc config.Cache) *rig {
	t.Helper()
	r := &rig{c: pcache.New(cc), pub: &fakeAnswers{hits: map[xdpanswer.AnswerKey]uint64{}}, now: int64(time.Hour)}
	r.x = New(r.pub, slog.New(slog.NewTextHandler(io.Discard, nil)), func() int64 { return r.now })
	r.src = Source{Config: &config.Config{}, Cache: r.c, ACL: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	r.x.Set(r.src)
	return r
}

// keyed parses q and returns it with its cache key.
func keyed(t testing.TB, q *dns.Msg) ([]byte, *dnswire.View, *pcache.Key) {
	t.Helper()
	raw := dnstest.Pack(t, q)
	v := new(dnswire.View)
	if err := v.ParseQuery(raw); err != nil {
		t.Fatal(err)
	}
	k := new(pcache.Key)
	k.Set(v)
	return raw, v, k
}

// store caches resp as the answer to q, as if it arrived age ago.
func (r *rig) store(t *testing.T, q *dns.Msg, resp *dns.Msg, age time.Duration) {
	t.Helper()
	_, _, k := keyed(t, q)
	r.c.Store(k, dnstest.Pack(t, resp), r.now-int64(age))
}

// hit asks the cache n times for q.
func (r *rig) hit(t *testing.T, q *dns.Msg, n int) {
	t.Helper()
	raw, v, k := keyed(t, q)
	for i := 0; i < n; i++ {
		if _, res, _ := r.c.Answer(nil, k, raw, v, r.now, false); res != pcache.Hit {
			t.Fatalf("%s: not a cache hit", q.Question[0].Name)
		}
	}
}

// round runs one publishing round, a second after the last one.
func (r *rig) round() []xdpanswer.Answer {
	r.now += int64(time.Second)
	r.x.Apply(nil)
	return r.pub.last()
}

func reply(t *testing.T, q *dns.Msg, rrs ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = true
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		m.Answer = append(m.Answer, rr)
	}
	if o := q.IsEdns0(); o != nil {
		m.SetEdns0(1232, o.Do())
	}
	return m
}

func TestXDPPublishesTheHottest(t *testing.T) {
	r := newRig(t, 2)
	qs := []*dns.Msg{dnstest.Query("a.demo.test.", dns.TypeA), dnstest.Query("b.demo.test.", dns.TypeA), dnstest.Query("c.demo.test.", dns.TypeA)}
	for i, q := range qs {
		r.store(t, q, reply(t, q, fmt.Sprintf("%s 300 IN A 192.0.2.%d", q.Question[0].Name, i+1)), 3*time.Second)
	}
	r.hit(t, qs[0], 5)
	r.hit(t, qs[1], 1)
	r.hit(t, qs[2], 9)
	got := r.round()
	if want := []string{"c.demo.test./1", "a.demo.test./1"}; !slices.Equal(names(got), want) {
		t.Fatalf("published %v, want the two hottest %v", names(got), want)
	}
	if !slices.Equal(r.pub.acl, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}) {
		t.Errorf("XDP ACL %v, want the proxy's", r.pub.acl)
	}

	t.Run("the answer is the cached one with aged TTLs", func(t *testing.T) {
		a := got[0]
		q := qs[2]
		want := reply(t, q, "c.demo.test. 296 IN A 192.0.2.3") // stored 3s before a round 1s on
		raw := dnstest.Pack(t, want)
		qEnd := dnswire.HeaderLen + len(a.Key.Name) + 4
		if a.Counts != [3]uint16{1, 0, 0} || a.Flags != binary.BigEndian.Uint16(raw[2:]) {
			t.Errorf("counts %v flags %#x, want [1 0 0] %#x", a.Counts, a.Flags, binary.BigEndian.Uint16(raw[2:]))
		}
		if string(a.Sections) != string(raw[qEnd:]) {
			t.Errorf("sections\n%x\nwant\n%x", a.Sections, raw[qEnd:])
		}
		if a.Key.EDNS || a.Key.DO || a.Key.CD || a.Key.Class != dns.ClassINET {
			t.Errorf("key %+v", a.Key)
		}
		var ts unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
			t.Fatal(err)
		}
		// Valid until its age ticks over once more: under two seconds.
		if left := time.Duration(a.Expires - ts.Nano()); left <= 0 || left > 2*time.Second {
			t.Errorf("expires in %v, want within (0, 2s]", left)
		}
	})

	t.Run("XDP's own hits keep an answer hot", func(t *testing.T) {
		// From now on only XDP answers c: the proxy sees no hit of it.
		var n uint64
		for i := 0; i < 5; i++ {
			n += 10
			r.pub.hits[got[0].Key] = n
			r.hit(t, qs[1], 1)
			if names := names(r.round()); !slices.Contains(names, "c.demo.test./1") {
				t.Fatalf("round %d: %v dropped the answer XDP serves", i, names)
			}
		}
	})

	t.Run("a name nobody asks for any more cools off", func(t *testing.T) {
		clear(r.pub.hits)
		for i := 0; i < 10; i++ {
			r.hit(t, qs[1], 1)
			r.round()
		}
		if got := names(r.pub.last()); !slices.Equal(got, []string{"b.demo.test./1"}) {
			t.Errorf("published %v, want only the name still asked for", got)
		}
	})

	t.Run("a purge republishes before it returns", func(t *testing.T) {
		n := 0
		r.x.Apply(func() { n = r.c.Purge([]byte("\x01b\x04demo\x04test\x00")) })
		if n != 1 {
			t.Fatalf("purged %d, want 1", n)
		}
		if got := r.pub.last(); len(got) != 0 {
			t.Errorf("after the purge XDP still holds %v", names(got))
		}
	})
}

func TestXDPPublishesOnlyPlainAnswers(t *testing.T) {
	edns := func(q *dns.Msg) *dns.Msg { q.SetEdns0(1232, true); return q }
	for _, tt := range []struct {
		name      string
		ruleTouch bool // a rule may touch the name
		q         *dns.Msg
		resp      func(t *testing.T, q *dns.Msg) *dns.Msg
		age       time.Duration
		want      bool
	}{
		{name: "a plain answer", want: true},
		{name: "EDNS with DO", q: edns(dnstest.Query("x.demo.test.", dns.TypeA)), want: true},
		{name: "a rule may touch it", ruleTouch: true},
		{name: "an answer with an EDNS option", q: edns(dnstest.Query("x.demo.test.", dns.TypeA)), resp: func(t *testing.T, q *dns.Msg) *dns.Msg {
			m := reply(t, q, "x.demo.test. 300 IN A 192.0.2.1")
			// An Extended DNS Error stays in the entry; a COOKIE would
			// not (pcache/clientopts.go), so it would not stop XDP.
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "x"})
			return m
		}},
		{name: "EDNS version 1", q: func() *dns.Msg {
			q := edns(dnstest.Query("x.demo.test.", dns.TypeA))
			q.IsEdns0().SetVersion(1)
			return q
		}()},
		{name: "SERVFAIL", resp: func(t *testing.T, q *dns.Msg) *dns.Msg {
			m := reply(t, q)
			m.Rcode = dns.RcodeServerFailure
			return m
		}, want: false},
		{name: "larger than XDP takes", resp: func(t *testing.T, q *dns.Msg) *dns.Msg {
			var rrs []string
			for i := 0; i < 40; i++ {
				rrs = append(rrs, fmt.Sprintf("x.demo.test. 300 IN A 192.0.2.%d", i))
			}
			return reply(t, q, rrs...)
		}},
		{name: "inside the prefetch window", age: 280 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cc := config.Cache{Size: 1000, XDPEntries: 10, Prefetch: true, MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour}
			if tt.name == "SERVFAIL" {
				cc.TemporaryFailureTTL = time.Minute
			}
			r := newRigCfg(t, cc)
			r.src.RuleFree = func(name []byte, qtype uint16) bool {
				return !tt.ruleTouch || string(name) != "\x01x\x04demo\x04test\x00" || qtype != dns.TypeA
			}
			r.x.Set(r.src)
			q := tt.q
			if q == nil {
				q = dnstest.Query("x.demo.test.", dns.TypeA)
			}
			resp := reply(t, q, "x.demo.test. 300 IN A 192.0.2.1")
			if tt.resp != nil {
				resp = tt.resp(t, q)
			}
			r.store(t, q, resp, tt.age)
			r.hit(t, q, 3)
			if got := len(r.round()) == 1; got != tt.want {
				t.Errorf("published = %v, want %v", got, tt.want)
			}
		})
	}
}

// A pool whose answers depend on the client's subnet gets none published:
// XDP does not look at the subnet.
func TestXDPLeavesECSPoolsAlone(t *testing.T) {
	r := newRig(t, 10)
	r.src.ClientSubnet = true
	r.x.Set(r.src)
	q := dnstest.Query("x.demo.test.", dns.TypeA)
	r.store(t, q, reply(t, q, "x.demo.test. 300 IN A 192.0.2.1"), 0)
	r.hit(t, q, 3)
	if got := r.round(); len(got) != 0 {
		t.Errorf("published %v from a pool with ECS", names(got))
	}
}

// A source from a new config (a reload) empties the map before Set
// returns; the next round publishes again what still qualifies.
func TestXDPReloadEmptiesTheMapFirst(t *testing.T) {
	r := newRig(t, 10)
	q := dnstest.Query("x.demo.test.", dns.TypeA)
	r.store(t, q, reply(t, q, "x.demo.test. 300 IN A 192.0.2.1"), 0)
	r.hit(t, q, 3)
	if got := r.round(); len(got) != 1 {
		t.Fatalf("published %v, want the one answer", names(got))
	}
	r.x.Set(r.src) // a rebuild of the same config changes nothing
	if got := r.pub.last(); len(got) != 1 {
		t.Fatalf("a rebuild of the same config emptied the map")
	}
	r.src.Config = &config.Config{}
	r.x.Set(r.src)
	if got := r.pub.last(); len(got) != 0 {
		t.Fatalf("after a reload XDP still holds %v", names(got))
	}
	r.hit(t, q, 3)
	if got := r.round(); len(got) != 1 {
		t.Errorf("the round after the reload published %v, want the answer again", names(got))
	}
}

// XDP's counts are cumulative per answer in its map; one that falls was
// removed and inserted again, and counts from zero.
func TestXDPHitsCountOnceEach(t *testing.T) {
	r := newRig(t, 10)
	q := dnstest.Query("x.demo.test.", dns.TypeA)
	r.store(t, q, reply(t, q, "x.demo.test. 300 IN A 192.0.2.1"), 0)
	r.hit(t, q, 4)
	got := r.round()
	if len(got) != 1 {
		t.Fatalf("published %v, want the one answer", names(got))
	}
	k := got[0].Key
	for _, n := range []uint64{10, 10, 4} {
		r.pub.mu.Lock()
		r.pub.hits[k] = n
		r.pub.mu.Unlock()
		r.round()
	}
	// 4, then halved each round: 2+10 (ten new), 6+0, 3+4 (re-inserted).
	var rate float32
	r.c.Hottest(1, 1, 0, func(*pcache.Entry) bool { return true }, func(e *pcache.Entry) { rate = e.Rate })
	if rate != 7 {
		t.Errorf("rate %v, want 7", rate)
	}
}
