package proxy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf/xdpanswer"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/pcache"
	"github.com/anyfront/anyfront/proxy/xdppublish"
)

// fakeAnswers keeps the last set the publisher hands the XDP map; the
// choice itself is tested in xdppublish, XDP for real in the lab test.
type fakeAnswers struct {
	mu   sync.Mutex
	last []xdpanswer.Answer
}

func (f *fakeAnswers) SyncAnswers(a []xdpanswer.Answer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.last = append([]xdpanswer.Answer(nil), a...)
	return nil
}

func (f *fakeAnswers) AnswerHits() (map[xdpanswer.AnswerKey]uint64, error) { return nil, nil }

func (f *fakeAnswers) SetACL([]netip.Prefix) error { return nil }

func (f *fakeAnswers) published() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.last)
}

// xdpRound builds the core's XDP source for a default pool with poolExtra
// in its config and rules, caches one hot answer for x.demo.test./A, runs
// one publishing round and says whether the answer was published.
func xdpRound(t *testing.T, poolExtra, rules string) bool {
	t.Helper()
	yml := fmt.Sprintf(`listen: [{address: "127.0.0.1:53"}]
acl: ["192.0.2.0/24"]
pools:
  default:
    backends: [{name: r1, address: "127.0.0.1:5301"}]
    cache: {size: 1000, xdp_entries: 10, prefetch: true}
%s  other:
    backends: [{name: r2, address: "127.0.0.1:5302"}]
%s`, poolExtra, rules)
	cfg, err := config.Parse("xdp.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	c := pcache.New(cfg.Pools["default"].Cache)
	def := &poolSnap{name: "default", cache: c}
	pools := map[string]*poolSnap{"default": def, "other": {name: "other"}}
	set, routes := compiledRules(&Proxy{}, cfg, pools)
	snap := &snapshot{def: def, acl: cfg.ACL, rules: set, ruleRoutes: routes}

	now := int64(time.Hour)
	q := dnstest.Query("x.demo.test.", dns.TypeA)
	raw := dnstest.Pack(t, q)
	var v msgView
	if err := v.ParseQuery(raw); err != nil {
		t.Fatal(err)
	}
	v.key.Set(&v.View)
	r := new(dns.Msg).SetReply(q)
	rr, _ := dns.NewRR("x.demo.test. 300 IN A 192.0.2.1")
	r.Answer = append(r.Answer, rr)
	c.Store(&v.key, dnstest.Pack(t, r), now)
	for i := 0; i < 3; i++ {
		if _, res, _ := c.Answer(nil, &v.key, raw, &v.View, now, false); res != pcache.Hit {
			t.Fatal("not a cache hit")
		}
	}
	pub := &fakeAnswers{}
	x := xdppublish.New(pub, nil, func() int64 { return now })
	x.Set(xdpSource(cfg, snap))
	x.Apply(nil)
	return pub.published() == 1
}

func TestXDPPublishesOnlyWhatNoRuleTouches(t *testing.T) {
	for _, tt := range []struct {
		name  string
		rules string
		want  bool
	}{
		{name: "no rule", want: true},
		{name: "a rule for another suffix", rules: `rules: [{match: {qname_suffix: ["other.test."]}, action: {pool: other}}]`, want: true},
		{name: "a rule for another type", rules: `rules: [{match: {qtype: [AAAA]}, action: {refuse: true}}]`, want: true},
		{name: "a TCP-only rule", rules: `rules: [{match: {transport: [tcp]}, action: {drop: true}}]`, want: true},
		{name: "a catch-all rule to the default pool", rules: `rules: [{action: {pool: default}}]`, want: true},
		{name: "a catch-all rule to it without the cache", rules: `rules: [{action: {nocache: true}}]`},
		{name: "a rule on the name", rules: `rules: [{match: {qname_suffix: ["demo.test."]}, action: {pool: other}}]`},
		{name: "a rule on clients", rules: `rules: [{match: {client: ["192.0.2.0/25"]}, action: {refuse: true}}]`},
		{name: "a rate limit that may apply", rules: `rules: [{match: {qname: ["x.demo.test."]}, action: {ratelimit: {qps: 10}}}]`},
		{name: "a negation", rules: `rules: [{match: {not: {qname_suffix: ["other.test."]}}, action: {log: true}}]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := xdpRound(t, "", tt.rules); got != tt.want {
				t.Errorf("published = %v, want %v", got, tt.want)
			}
		})
	}
}

// A pool that adds ECS keys its answers by client subnet: XDP, which does
// not look at the subnet, gets none of them.
func TestXDPLeavesECSPoolsAlone(t *testing.T) {
	if xdpRound(t, "    ecs: {add: true}\n", "") {
		t.Error("published an answer from a pool with ECS")
	}
}
