package admin

import (
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

const testReadToken = "read-only-token-for-tests"

// concrete turns a mux pattern into a request: method, path and body.
func concrete(pattern string) (method, path, body string) {
	method, path, _ = strings.Cut(pattern, " ")
	path = strings.NewReplacer("{name}", "r1", "{prefix...}", "192.0.2.7/32", "{$}", "").Replace(path)
	if strings.HasSuffix(path, "/weight") {
		body = `{"weight": 2}`
	}
	return method, path, body
}

// TestRoles drives every endpoint of the real server with no token, a
// wrong one, the read token and the operate token.
func TestRoles(t *testing.T) {
	store := newStore(t)
	logs := &lockedBuffer{}
	fb := &fakeBlocks{m: map[netip.Prefix]bool{}}
	s, url := startWith(t, config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, testToken),
		ReadTokenFile: writeToken(t, testReadToken)},
		Deps{Store: store, Top: fakeTop{}, Blocks: fb, Rules: fakeRules{}, Reload: func() ([]string, error) { return nil, nil },
			PurgeCache: func(string) (int, error) { return 0, nil },
			Log:        slog.New(slog.NewTextHandler(logs, nil))})
	open := map[string]bool{"GET /healthz": true}
	unchanged := func(t *testing.T) {
		t.Helper()
		if store.Node(nil).Drained || mustAdmin(t, store, "r1") != state.AdminAuto {
			t.Fatalf("a refused call changed state: drained %v, r1 %s", store.Node(nil).Drained, mustAdmin(t, store, "r1"))
		}
	}
	for _, ep := range s.endpoints() {
		if strings.Contains(ep.pattern, "/fleet") {
			continue // relayed to another node: TestFleetPage
		}
		method, path, body := concrete(ep.pattern)
		t.Run(ep.pattern, func(t *testing.T) {
			if method == "GET" {
				want := map[string]int{"": 401, "wrong": 401, testReadToken: 200, testToken: 200}
				for tok, code := range want {
					if open[ep.pattern] {
						code = 200
					}
					if r := do(t, method, url+path, tok, body); r.code != code {
						t.Errorf("token %q: %d, want %d: %s", tok, r.code, code, r.body)
					}
				}
				return
			}
			fb.mu.Lock()
			fb.m[netip.MustParsePrefix("192.0.2.7/32")] = true
			fb.mu.Unlock()
			for tok, want := range map[string]struct {
				code int
				role string
			}{"": {401, "none"}, "wrong": {401, "none"}, testReadToken: {403, "read"}} {
				before := counted(s.metrics.audited, ep.pattern, "refused")
				r := do(t, method, url+path, tok, body)
				if r.code != want.code {
					t.Errorf("token %q: %d, want %d", tok, r.code, want.code)
				}
				unchanged(t)
				if len(fb.BlockList()) != 1 {
					t.Fatal("a refused call lifted a block")
				}
				line := "role=" + want.role + " remote=127.0.0.1:"
				if !strings.Contains(logs.String(), line) || !strings.Contains(logs.String(), `action="`+ep.pattern+`"`) {
					t.Errorf("no audit line with %s for %s:\n%s", line, ep.pattern, logs.String())
				}
				if got := counted(s.metrics.audited, ep.pattern, "refused"); got != before+1 {
					t.Errorf("refused count %v after %v", got, before)
				}
			}
			r := do(t, method, url+path, testToken, body)
			if r.code >= 300 {
				t.Errorf("operate token: %d %s", r.code, r.body)
			}
			want := "role=operate remote=127.0.0.1:"
			if !strings.Contains(logs.String(), want) || counted(s.metrics.audited, ep.pattern, "ok") != 1 {
				t.Errorf("no ok audit line or count for %s:\n%s", ep.pattern, logs.String())
			}
			// Put things back for the next endpoint's "changes nothing".
			_, _ = store.SetNodeDrained(false)
			if _, err := store.SetAdmin("r1", state.AdminAuto); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("audit lines carry the logger key and never the token", func(t *testing.T) {
		l := logs.String()
		if !strings.Contains(l, "logger=audit") || strings.Contains(l, testToken) || strings.Contains(l, testReadToken) {
			t.Errorf("audit log:\n%s", l)
		}
		if !strings.Contains(l, `msg="admin call" logger=audit role=operate`) || !strings.Contains(l, "status=200 result=ok") {
			t.Errorf("audit log lacks a complete line:\n%s", l)
		}
	})
}

// TestNoTokenConfigured: reads are open, changes refused, and client
// addresses never served.
func TestNoTokenConfigured(t *testing.T) {
	store := newStore(t)
	_, url := start(t, "", Deps{Store: store, Top: fakeTop{}})
	for _, p := range []string{"/api/v1/backends", "/api/v1/node", "/metrics", "/api/v1/stats"} {
		if r := do(t, "GET", url+p, "", ""); r.code != 200 {
			t.Errorf("GET %s: %d", p, r.code)
		}
	}
	r := do(t, "GET", url+"/api/v1/top", "", "")
	if r.code != http.StatusForbidden || !strings.Contains(r.errorText(t), "never served without a token") {
		t.Errorf("top without tokens: %d %s", r.code, r.body)
	}
	if r := do(t, "POST", url+"/api/v1/node/drain", "anything", ""); r.code != http.StatusForbidden || store.Node(nil).Drained {
		t.Errorf("drain without tokens: %d", r.code)
	}
}

// TestSameTokenInBothRoles: one secret in both files is refused.
func TestSameTokenInBothRoles(t *testing.T) {
	_, err := New(config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, testToken), ReadTokenFile: writeToken(t, testToken)},
		Deps{Store: newStore(t), Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "same token") {
		t.Errorf("err = %v", err)
	}
}

// counted reads one counter of vec.
func counted(vec *prometheus.CounterVec, labels ...string) float64 {
	var m dto.Metric
	if err := vec.WithLabelValues(labels...).Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// TestNodeIdentity: name, site and version reach /metrics and the node
// view.
func TestNodeIdentity(t *testing.T) {
	_, url := start(t, "", Deps{Node: config.Node{Name: "ams1-n1", Site: "ams1"}, Version: "v1.2.3-4-gabc"})
	m := string(do(t, "GET", url+"/metrics", "", "").body)
	if !regexpMust(`(?m)^anyfront_build_info\{goversion="go[^"]+",node="ams1-n1",site="ams1",version="v1.2.3-4-gabc"\} 1$`).MatchString(m) {
		t.Errorf("no build_info in:\n%s", m)
	}
	var v NodeView
	do(t, "GET", url+"/api/v1/node", "", "").json(t, &v)
	if v.Name != "ams1-n1" || v.Site != "ams1" || v.Version != "v1.2.3-4-gabc" {
		t.Errorf("node view %+v", v)
	}
}

func regexpMust(s string) *regexp.Regexp { return regexp.MustCompile(s) }
