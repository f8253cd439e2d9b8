package admin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/bgp/bgpstatus"
	"github.com/anyfront/anyfront/config"
)

func TestNode(t *testing.T) {
	store := newStore(t)
	_, url := start(t, writeToken(t, testToken), Deps{Store: store})
	var v NodeView
	do(t, "POST", url+"/api/v1/node/drain", testToken, "").json(t, &v)
	if !v.Drained || v.Changed == nil || !*v.Changed || !store.Node(nil).Drained || v.Note == "" {
		t.Errorf("drain: %+v", v)
	}
	v = NodeView{}
	do(t, "POST", url+"/api/v1/node/undrain", testToken, "").json(t, &v)
	if v.Drained || store.Node(nil).Drained {
		t.Errorf("undrain: %+v", v)
	}
	v = NodeView{}
	do(t, "GET", url+"/api/v1/node", "", "").json(t, &v)
	if v.Drained || v.Changed != nil {
		t.Errorf("get: %+v", v)
	}
}

type fakeBGP struct{}

func (fakeBGP) Status() bgpstatus.Status {
	return bgpstatus.Status{Enabled: true, Peers: []bgpstatus.Peer{{Address: "198.51.100.1", State: "established"}}}
}

func TestBGP(t *testing.T) {
	_, off := start(t, "", Deps{})
	_, on := start(t, "", Deps{BGP: fakeBGP{}})
	var got map[string]any
	do(t, "GET", off+"/api/v1/bgp", "", "").json(t, &got)
	if got["enabled"] != false || len(got) != 1 {
		t.Errorf("without bgp: %v", got)
	}
	got = nil
	do(t, "GET", on+"/api/v1/bgp", "", "").json(t, &got)
	if got["enabled"] != true || got["peers"] == nil {
		t.Errorf("with bgp: %v", got)
	}
}

func TestReload(t *testing.T) {
	_, badErr := config.Parse("/etc/anyfront/anyfront.yaml", []byte("pools:\n  default:\n    policy: fastest\n    backends: []\nbogus: 1\n"))
	var cerrs *config.Errors
	if !errors.As(badErr, &cerrs) || len(cerrs.List) < 2 {
		t.Fatalf("want a config with several errors, got %v", badErr)
	}
	var next error
	var nextWarnings []string
	tok := writeToken(t, testToken)
	_, url := start(t, tok, Deps{Reload: func() ([]string, error) { return nextWarnings, next }})
	_, noReload := start(t, tok, Deps{})

	t.Run("a valid config is 200", func(t *testing.T) {
		next = nil
		res := do(t, "POST", url+"/api/v1/reload", testToken, "")
		if res.code != 200 || !strings.Contains(string(res.body), `"reloaded"`) {
			t.Errorf("%d %s", res.code, res.body)
		}
	})
	t.Run("warnings reach the caller", func(t *testing.T) {
		next, nextWarnings = nil, []string{"admin.listen changed: restart anyfront to apply it"}
		defer func() { nextWarnings = nil }()
		res := do(t, "POST", url+"/api/v1/reload", testToken, "")
		var r reloadResult
		res.json(t, &r)
		if res.code != 200 || r.Status != "reloaded" || len(r.Warnings) != 1 || r.Warnings[0] != nextWarnings[0] {
			t.Errorf("%d %s", res.code, res.body)
		}
	})
	t.Run("an invalid config is 400 with every FILE:LINE line", func(t *testing.T) {
		next = badErr
		res := do(t, "POST", url+"/api/v1/reload", testToken, "")
		var e apiError
		res.json(t, &e)
		if res.code != 400 || e.Error != "invalid config" || len(e.Errors) != len(cerrs.List) {
			t.Fatalf("%d %s", res.code, res.body)
		}
		for i, line := range e.Errors {
			if line != cerrs.List[i].Error() || !strings.HasPrefix(line, "/etc/anyfront/anyfront.yaml:") {
				t.Errorf("line %d = %q", i, line)
			}
		}
	})
	t.Run("any other failure is 500", func(t *testing.T) {
		next = errors.New("state: boom")
		res := do(t, "POST", url+"/api/v1/reload", testToken, "")
		if res.code != 500 || !strings.Contains(res.errorText(t), "boom") {
			t.Errorf("%d %s", res.code, res.body)
		}
	})
	t.Run("without a reload function it is 501", func(t *testing.T) {
		if res := do(t, "POST", noReload+"/api/v1/reload", testToken, ""); res.code != 501 {
			t.Errorf("%d %s", res.code, res.body)
		}
	})
}

func TestCachePurge(t *testing.T) {
	var gotSuffix []string
	tok := writeToken(t, testToken)
	_, url := start(t, tok, Deps{PurgeCache: func(s string) (int, error) {
		gotSuffix = append(gotSuffix, s)
		return 12, nil
	}})
	_, noCache := start(t, tok, Deps{})
	var r PurgeResult
	do(t, "DELETE", url+"/api/v1/cache", testToken, "").json(t, &r)
	if r.Purged != 12 || r.Name != "" {
		t.Errorf("purge all: %+v", r)
	}
	do(t, "DELETE", url+"/api/v1/cache?name=Corp.Example", testToken, "").json(t, &r)
	if r.Name != "corp.example." || len(gotSuffix) != 2 || gotSuffix[0] != "" || gotSuffix[1] != "corp.example." {
		t.Errorf("purge suffix: %+v, purge saw %q", r, gotSuffix)
	}
	if res := do(t, "DELETE", url+"/api/v1/cache?name=a..b", testToken, ""); res.code != 400 {
		t.Errorf("bad name: %d", res.code)
	}
	res := do(t, "DELETE", noCache+"/api/v1/cache", testToken, "")
	r = PurgeResult{}
	res.json(t, &r)
	if res.code != 200 || r.Purged != 0 || r.Note != "no cache configured" {
		t.Errorf("no cache: %d %s", res.code, res.body)
	}
}

func TestRates(t *testing.T) {
	live := &fakeLive{}
	store := newStore(t)
	backends, _ := store.Backends(nil)
	r := newRates()
	t0 := time.Unix(1000, 0)
	for i, q := range []uint64{0, 100, 200, 300} {
		live.set("r1", BackendLive{Queries: q})
		r.sample(t0.Add(time.Duration(i)*time.Second), backends, live)
	}
	if got := r.get("r1"); got != 100 {
		t.Errorf("steady 100/s: got %v", got)
	}
	live.set("r1", BackendLive{Queries: 5}) // the proxy rebuilt the backend
	r.sample(t0.Add(4*time.Second), backends, live)
	if got := r.get("r1"); got != 100 {
		t.Errorf("after a counter restart: got %v, want the rate kept", got)
	}
	live.set("r1", BackendLive{Queries: 5})
	r.sample(t0.Add(5*time.Second), backends, live)
	if got := r.get("r1"); got != 50 {
		t.Errorf("traffic stopped for one half-life: got %v, want 50", got)
	}
	if b, _ := json.Marshal(r.get("gone")); string(b) != "0" {
		t.Errorf("unknown backend: %s", b)
	}
}
