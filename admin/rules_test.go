package admin

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dynblock"
	"github.com/anyfront/anyfront/proxy/rules"
)

// shapeConfig has a rule of every kind of match and action.
const shapeConfig = `pools:
  default: {backends: [{name: a, address: "127.0.0.1:1"}]}
  corp: {backends: [{name: c, address: "127.0.0.1:2"}]}
rules:
  - {match: {qname_suffix: ["corp.example."]}, action: {pool: corp}}
  - {match: {qtype: [ANY, TXT]}, action: {refuse: true}}
  - {match: {}, action: {ratelimit: {qps: 100, burst: 100, v4_prefix: 32, v6_prefix: 64, over: drop, max_sources: 65536}}}
  - {match: {qname: [a.example.], client: ["203.0.113.0/24", "2001:db8::/32"]}, action: {drop: true}}
  - {match: {opcode: [NOTIFY, 5], rd: false, transport: [tcp, dot], probability: 0.5}, action: {nxdomain: true}}
  - {match: {all: [{qname_suffix: [a.test]}, {qtype: [MX]}], any: [{qname: [x.b.test]}], not: {client: ["192.0.2.0/24"]}}, action: {rcode: SERVFAIL}}
  - {match: {qname: [s.example.]}, action: {spoof: ["192.0.2.99", "2001:db8::99"]}}
  - {match: {qname: [c.example.]}, action: {spoof_cname: portal.example.net.}}
  - {match: {qname: [t.example.]}, action: {truncate: true}}
  - {match: {qname: [l.example.]}, action: {log: true}}
  - {match: {qname: [n.example.]}, action: {nocache: true}}
  - {match: {qname: [p.example.]}, action: {pool: corp, nocache: true}}
  - {match: {qname: [r.example.]}, action: {rcode: 12}}
`

// rulesShape and blocksShape are what GET /api/v1/rules and /blocks
// answered for shapeConfig (hits set to the rule's index, 412 limited)
// and one block, taken from the untyped seams before they were typed: the
// contract of docs/admin-api.md, which must not change.
const (
	rulesShape  = `[{"index":0,"line":5,"match":{"qname_suffix":["corp.example."]},"action":{"pool":"corp"},"hits":0},{"index":1,"line":6,"match":{"qtype":["ANY","TXT"]},"action":{"refuse":true},"hits":1},{"index":2,"line":7,"match":{},"action":{"ratelimit":{"burst":100,"max_sources":65536,"over":"drop","qps":100,"v4_prefix":32,"v6_prefix":64}},"hits":2,"limited":412},{"index":3,"line":8,"match":{"client":["203.0.113.0/24","2001:db8::/32"],"qname":["a.example."]},"action":{"drop":true},"hits":3},{"index":4,"line":9,"match":{"opcode":["NOTIFY","UPDATE"],"probability":0.5,"rd":false,"transport":["tcp","dot"]},"action":{"nxdomain":true},"hits":4},{"index":5,"line":10,"match":{"all":[{"qname_suffix":["a.test."]},{"qtype":["MX"]}],"any":[{"qname":["x.b.test."]}],"not":{"client":["192.0.2.0/24"]}},"action":{"rcode":"SERVFAIL"},"hits":5},{"index":6,"line":11,"match":{"qname":["s.example."]},"action":{"spoof":["192.0.2.99","2001:db8::99"]},"hits":6},{"index":7,"line":12,"match":{"qname":["c.example."]},"action":{"spoof_cname":"portal.example.net."},"hits":7},{"index":8,"line":13,"match":{"qname":["t.example."]},"action":{"truncate":true},"hits":8},{"index":9,"line":14,"match":{"qname":["l.example."]},"action":{"log":true},"hits":9},{"index":10,"line":15,"match":{"qname":["n.example."]},"action":{"nocache":true},"hits":10},{"index":11,"line":16,"match":{"qname":["p.example."]},"action":{"nocache":true,"pool":"corp"},"hits":11},{"index":12,"line":17,"match":{"qname":["r.example."]},"action":{"rcode":"12"},"hits":12}]`
	blocksShape = `[{"prefix":"198.51.100.0/24","reason":"over 50 NXDOMAIN answers/s","since":"2026-11-23T06:40:02Z","until":"2026-11-23T06:41:02Z","dropped":18233}]`
)

// fakeRules lists shapeConfig's rules as the proxy would.
type fakeRules struct{}

func (fakeRules) RuleList() []rules.Status {
	cfg, err := config.Parse("r.yaml", []byte(shapeConfig))
	if err != nil {
		panic(err) // a constant config
	}
	list := rules.Compile(cfg).Status()
	for i := range list {
		list[i].Hits = uint64(i)
		if list[i].Limited != nil {
			*list[i].Limited = 412
		}
	}
	return list
}

// fakeBlocks holds blocks by prefix.
type fakeBlocks struct {
	mu sync.Mutex
	m  map[netip.Prefix]bool
}

func (f *fakeBlocks) BlockList() []dynblock.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	since := time.Date(2026, 11, 23, 6, 40, 2, 0, time.UTC)
	var out []dynblock.Status
	for p := range f.m {
		out = append(out, dynblock.Status{Prefix: p.String(), Reason: "over 50 NXDOMAIN answers/s", Since: since, Until: since.Add(time.Minute), Dropped: 18233})
	}
	return out
}

func (f *fakeBlocks) Unblock(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.m[p] {
		return fmt.Errorf("no such dynamic block: %s", p)
	}
	delete(f.m, p)
	return nil
}

// sameJSON fails unless got and want decode to the same value.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestRulesAndBlocksShape(t *testing.T) {
	fb := &fakeBlocks{m: map[netip.Prefix]bool{netip.MustParsePrefix("198.51.100.0/24"): true}}
	_, url := start(t, writeToken(t, testToken), Deps{Rules: fakeRules{}, Blocks: fb})
	t.Run("GET /api/v1/rules keeps its shape", func(t *testing.T) {
		sameJSON(t, do(t, "GET", url+"/api/v1/rules", testToken, "").body, rulesShape)
	})
	t.Run("GET /api/v1/blocks keeps its shape", func(t *testing.T) {
		sameJSON(t, do(t, "GET", url+"/api/v1/blocks", testToken, "").body, blocksShape)
	})
	t.Run("no blocks is [], not null", func(t *testing.T) {
		empty := &fakeBlocks{m: map[netip.Prefix]bool{}}
		_, url := start(t, writeToken(t, testToken), Deps{Blocks: empty})
		if got := strings.TrimSpace(string(do(t, "GET", url+"/api/v1/blocks", testToken, "").body)); got != "[]" {
			t.Errorf("%s", got)
		}
	})
}

func TestRulesAndBlocks(t *testing.T) {
	fb := &fakeBlocks{m: map[netip.Prefix]bool{
		netip.MustParsePrefix("198.51.100.0/24"): true,
		netip.MustParsePrefix("2001:db8::/64"):   true,
		netip.MustParsePrefix("192.0.2.7/32"):    true,
	}}
	_, url := start(t, writeToken(t, testToken), Deps{Rules: fakeRules{}, Blocks: fb})
	_, none := start(t, writeToken(t, testToken), Deps{})

	t.Run("rules are listed with their hits", func(t *testing.T) {
		var got []map[string]any
		do(t, "GET", url+"/api/v1/rules", testToken, "").json(t, &got)
		if len(got) != 13 || got[7]["hits"] != float64(7) {
			t.Errorf("%v", got)
		}
		got = nil
		do(t, "GET", none+"/api/v1/rules", testToken, "").json(t, &got)
		if got == nil || len(got) != 0 {
			t.Errorf("without rules: %v", got)
		}
	})
	t.Run("blocks are listed", func(t *testing.T) {
		var got []map[string]any
		do(t, "GET", url+"/api/v1/blocks", testToken, "").json(t, &got)
		if len(got) != 3 {
			t.Errorf("%v", got)
		}
	})
	t.Run("unblock needs the token", func(t *testing.T) {
		if res := do(t, "DELETE", url+"/api/v1/blocks/198.51.100.0/24", "wrong", ""); res.code != 401 {
			t.Errorf("%d %s", res.code, res.body)
		}
		if res := do(t, "DELETE", url+"/api/v1/blocks/198.51.100.0/24", "", ""); res.code != 401 {
			t.Errorf("%d %s", res.code, res.body)
		}
		if len(fb.m) != 3 {
			t.Error("a refused call changed something")
		}
	})
	for _, tt := range []struct {
		name, path string
		code       int
	}{
		{"a raw slash", "198.51.100.0/24", 200},
		{"an escaped slash and IPv6", "2001:db8::%2F64", 200},
		{"a bare address is its host prefix", "192.0.2.7", 200},
		{"a prefix not blocked is 404", "198.51.100.0/24", 404},
		{"not a prefix is 400", "bogus", 400},
	} {
		t.Run("unblock: "+tt.name, func(t *testing.T) {
			if res := do(t, "DELETE", url+"/api/v1/blocks/"+tt.path, testToken, ""); res.code != tt.code {
				t.Errorf("%d %s", res.code, res.body)
			}
		})
	}
	if len(fb.m) != 0 {
		t.Errorf("left: %v", fb.m)
	}
	if res := do(t, "DELETE", none+"/api/v1/blocks/192.0.2.0/24", testToken, ""); res.code != 404 {
		t.Errorf("without blocks: %d %s", res.code, res.body)
	}
}
