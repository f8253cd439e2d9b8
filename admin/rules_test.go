package admin

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
)

type fakeRules struct{}

func (fakeRules) Rules() any {
	return []map[string]any{{"index": 0, "line": 12, "match": map[string]any{"qtype": []string{"ANY"}}, "action": map[string]any{"refuse": true}, "hits": 7}}
}

// fakeBlocks holds blocks by prefix.
type fakeBlocks struct {
	mu sync.Mutex
	m  map[netip.Prefix]bool
}

func (f *fakeBlocks) Blocks() any {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []map[string]any{}
	for p := range f.m {
		out = append(out, map[string]any{"prefix": p.String()})
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
		if len(got) != 1 || got[0]["hits"] != float64(7) {
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
