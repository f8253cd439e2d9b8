package proxy

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

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf/xdpanswer"
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

// xdpRig is a proxy with one cached pool and a fake XDP map, not running:
// the test calls publishLocked itself, one round at a time.
type xdpRig struct {
	p    *Proxy
	c    *packetCache
	pub  *fakeAnswers
	skew int64 // the publisher's clock runs this far ahead of the proxy's
}

func newXDPRig(t *testing.T, entries int, rules string) *xdpRig {
	return newXDPRigPool(t, entries, "", rules)
}

// newXDPRigPool is newXDPRig with poolExtra in the default pool's config.
func newXDPRigPool(t *testing.T, entries int, poolExtra, rules string) *xdpRig {
	t.Helper()
	yml := fmt.Sprintf(`listen: [{address: "127.0.0.1:53"}]
acl: ["192.0.2.0/24"]
pools:
  default:
    backends: [{name: r1, address: "127.0.0.1:5301"}]
    cache: {size: 1000, xdp_entries: %d, prefetch: true}
%s  other:
    backends: [{name: r2, address: "127.0.0.1:5302"}]
%s`, entries, poolExtra, rules)
	cfg, err := config.Parse("xdp.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	c := newPacketCache(cfg.Pools["default"].Cache)
	def := &poolSnap{name: "default", cache: c}
	pools := map[string]*poolSnap{"default": def, "other": {name: "other"}}
	p := &Proxy{epoch: time.Now().Add(-time.Hour), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		caches: map[string]*packetCache{"default": c}}
	p.cfg.Store(cfg)
	set, routes := compiledRules(p, cfg, pools)
	p.snap.Store(&snapshot{def: def, acl: cfg.ACL, rules: set, ruleRoutes: routes})
	pub := &fakeAnswers{hits: map[xdpanswer.AnswerKey]uint64{}}
	p.SetAnswerPublisher(pub)
	r := &xdpRig{p: p, c: c, pub: pub}
	p.xdp.now = func() int64 { return p.now() + r.skew }
	return r
}

// store caches resp as the answer to q, as if it arrived age ago.
func (r *xdpRig) store(t *testing.T, q *dns.Msg, resp *dns.Msg, age time.Duration) {
	t.Helper()
	_, v := keyed(t, q)
	r.c.store(&v.key, pack(t, resp), r.p.now()-int64(age))
}

// hit asks the cache n times for q.
func (r *xdpRig) hit(t *testing.T, q *dns.Msg, n int) {
	t.Helper()
	raw, v := keyed(t, q)
	for i := 0; i < n; i++ {
		if _, res, _ := r.c.answer(nil, &v.key, raw, v, r.p.now(), false); res != cacheHit {
			t.Fatalf("%s: not a cache hit", q.Question[0].Name)
		}
	}
}

// round runs one publishing round, a second after the last one.
func (r *xdpRig) round() []xdpanswer.Answer {
	r.skew += int64(time.Second)
	r.p.xdp.mu.Lock()
	r.p.xdp.publishLocked()
	r.p.xdp.mu.Unlock()
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
	r := newXDPRig(t, 2, "")
	qs := []*dns.Msg{query("a.demo.test.", dns.TypeA), query("b.demo.test.", dns.TypeA), query("c.demo.test.", dns.TypeA)}
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
		raw := pack(t, want)
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
		if n, err := r.p.PurgeCache("b.demo.test."); err != nil || n != 1 {
			t.Fatalf("purge: %d, %v", n, err)
		}
		if got := r.pub.last(); len(got) != 0 {
			t.Errorf("after the purge XDP still holds %v", names(got))
		}
	})
}

func TestXDPPublishesOnlyWhatNoRuleTouches(t *testing.T) {
	edns := func(q *dns.Msg) *dns.Msg { q.SetEdns0(1232, true); return q }
	for _, tt := range []struct {
		name  string
		rules string
		q     *dns.Msg
		resp  func(t *testing.T, q *dns.Msg) *dns.Msg
		age   time.Duration
		want  bool
	}{
		{name: "a plain answer", want: true},
		{name: "EDNS with DO", q: edns(query("x.demo.test.", dns.TypeA)), want: true},
		{name: "a rule for another suffix", rules: `rules: [{match: {qname_suffix: ["other.test."]}, action: {pool: other}}]`, want: true},
		{name: "a rule for another type", rules: `rules: [{match: {qtype: [AAAA]}, action: {refuse: true}}]`, want: true},
		{name: "a dnswire.TCP-only rule", rules: `rules: [{match: {transport: [tcp]}, action: {drop: true}}]`, want: true},
		{name: "a catch-all rule to the default pool", rules: `rules: [{action: {pool: default}}]`, want: true},
		{name: "a catch-all rule to it without the cache", rules: `rules: [{action: {nocache: true}}]`},
		{name: "a rule on the name", rules: `rules: [{match: {qname_suffix: ["demo.test."]}, action: {pool: other}}]`},
		{name: "a rule on clients", rules: `rules: [{match: {client: ["192.0.2.0/25"]}, action: {refuse: true}}]`},
		{name: "a rate limit that may apply", rules: `rules: [{match: {qname: ["x.demo.test."]}, action: {ratelimit: {qps: 10}}}]`},
		{name: "a negation", rules: `rules: [{match: {not: {qname_suffix: ["other.test."]}}, action: {log: true}}]`},
		{name: "an answer with an EDNS option", q: edns(query("x.demo.test.", dns.TypeA)), resp: func(t *testing.T, q *dns.Msg) *dns.Msg {
			m := reply(t, q, "x.demo.test. 300 IN A 192.0.2.1")
			// An Extended DNS Error stays in the entry; a COOKIE would
			// not (cacheopts.go), so it would not stop XDP.
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer, ExtraText: "x"})
			return m
		}},
		{name: "EDNS version 1", q: func() *dns.Msg { q := edns(query("x.demo.test.", dns.TypeA)); q.IsEdns0().SetVersion(1); return q }()},
		{name: "SERVFAIL", resp: func(t *testing.T, q *dns.Msg) *dns.Msg {
			m := reply(t, q)
			m.Rcode = dns.RcodeServerFailure
			return m
		}, rules: "", want: false},
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
			r := newXDPRig(t, 10, tt.rules)
			if tt.name == "SERVFAIL" {
				r.c.cfg.TemporaryFailureTTL = time.Minute
			}
			q := tt.q
			if q == nil {
				q = query("x.demo.test.", dns.TypeA)
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

// A pool that adds ECS keys its answers by client subnet: XDP, which does
// not look at the subnet, gets none of them.
func TestXDPLeavesECSPoolsAlone(t *testing.T) {
	r := newXDPRigPool(t, 10, "    ecs: {add: true}\n", "")
	q := query("x.demo.test.", dns.TypeA)
	r.store(t, q, reply(t, q, "x.demo.test. 300 IN A 192.0.2.1"), 0)
	r.hit(t, q, 3)
	if got := r.round(); len(got) != 0 {
		t.Errorf("published %v from a pool with ECS", names(got))
	}
}
