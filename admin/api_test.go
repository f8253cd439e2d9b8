package admin

import (
	"net/http"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

func TestListBackends(t *testing.T) {
	live := &fakeLive{}
	live.set("r1", BackendLive{Outstanding: 7, LatencyUS: 1500, Queries: 42, RTOUS: 20000})
	store := newStore(t)
	if _, err := store.SetHealth("r2", state.HealthDown, "timeout"); err != nil {
		t.Fatal(err)
	}
	_, url := start(t, "", Deps{Store: store, Live: live})

	res := do(t, "GET", url+"/api/v1/backends", "", "")
	if res.code != http.StatusOK || !strings.HasPrefix(res.header.Get("Content-Type"), "application/json") {
		t.Fatalf("got %d %q", res.code, res.header.Get("Content-Type"))
	}
	t.Run("every contract field is present", func(t *testing.T) {
		var raw []map[string]any
		res.json(t, &raw)
		if len(raw) != 3 {
			t.Fatalf("got %d backends, want 3", len(raw))
		}
		for _, f := range []string{"name", "pool", "address", "health", "admin", "weight", "outstanding", "qps", "latency_ms"} {
			if _, ok := raw[0][f]; !ok {
				t.Errorf("field %q missing from %v", f, raw[0])
			}
		}
	})
	t.Run("values come from the store and the live stats", func(t *testing.T) {
		var got []BackendView
		res.json(t, &got)
		byName := map[string]BackendView{}
		for _, b := range got {
			byName[b.Name] = b
		}
		r1, r2 := byName["r1"], byName["r2"]
		if r1.Pool != "default" || r1.Address != "127.0.0.1:5301" || r1.Health != "up" || r1.Admin != "auto" ||
			r1.Weight != 1 || r1.Outstanding != 7 || r1.LatencyMS != 1.5 || r1.Queries != 42 || r1.RTOMS != 20 || !r1.Usable {
			t.Errorf("r1 = %+v", r1)
		}
		if r2.Health != "down" || r2.Reason != "timeout" || !r2.Checked || r2.Usable || r2.Weight != 3 {
			t.Errorf("r2 = %+v", r2)
		}
	})
	t.Run("one backend by name", func(t *testing.T) {
		var b BackendView
		res := do(t, "GET", url+"/api/v1/backends/c1", "", "")
		res.json(t, &b)
		if res.code != 200 || b.Name != "c1" || b.Pool != "corp" {
			t.Errorf("%d %+v", res.code, b)
		}
	})
}

func TestBackendAdminCalls(t *testing.T) {
	store := newStore(t)
	_, url := start(t, writeToken(t, testToken), Deps{Store: store})
	for _, tt := range []struct {
		name, path string
		want       state.Admin
	}{
		{"drain stops new queries", "/api/v1/backends/r1/drain", state.AdminDrain},
		{"undrain goes back to auto", "/api/v1/backends/r1/undrain", state.AdminAuto},
		{"down forces the backend out", "/api/v1/backends/r1/down", state.AdminDown},
		{"up forces the backend in", "/api/v1/backends/r1/up", state.AdminUp},
		{"undrain after up is auto again", "/api/v1/backends/r1/undrain", state.AdminAuto},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, "POST", url+tt.path, testToken, "")
			var got ChangeResult
			res.json(t, &got)
			if res.code != 200 || got.Admin != string(tt.want) || !got.Changed || got.Name != "r1" {
				t.Errorf("%d %+v", res.code, got)
			}
			if a := mustAdmin(t, store, "r1"); a != tt.want {
				t.Errorf("store has %q, want %q", a, tt.want)
			}
		})
	}
	t.Run("a repeated call is a no-op and says so", func(t *testing.T) {
		do(t, "POST", url+"/api/v1/backends/r2/drain", testToken, "")
		var got ChangeResult
		do(t, "POST", url+"/api/v1/backends/r2/drain", testToken, "").json(t, &got)
		if got.Changed || got.Admin != "drain" {
			t.Errorf("%+v", got)
		}
	})
	t.Run("unknown backend is a 404 JSON error", func(t *testing.T) {
		for _, path := range []string{"/api/v1/backends/nope/drain", "/api/v1/backends/nope"} {
			method := "POST"
			if !strings.HasSuffix(path, "drain") {
				method = "GET"
			}
			res := do(t, method, url+path, testToken, "")
			if res.code != 404 || !strings.Contains(res.errorText(t), `"nope" not found`) {
				t.Errorf("%s: %d %s", path, res.code, res.body)
			}
		}
	})
}

func TestWeight(t *testing.T) {
	store := newStore(t)
	_, url := start(t, writeToken(t, testToken), Deps{Store: store})
	for _, tt := range []struct {
		name, body string
		code       int
		weight     int
	}{
		{"a valid weight is applied", `{"weight": 5}`, 200, 5},
		{"zero is refused", `{"weight": 0}`, 400, 5},
		{"an absurd weight is refused", `{"weight": 99999999}`, 400, 5},
		{"a missing weight is refused", `{}`, 400, 5},
		{"an unknown field is refused", `{"weight": 2, "wieght": 3}`, 400, 5},
		{"not JSON is refused", `weight=2`, 400, 5},
		{"a body larger than the limit is refused", `{"weight": 2}` + strings.Repeat(" ", maxBodyBytes), 413, 5},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, "POST", url+"/api/v1/backends/r1/weight", testToken, tt.body)
			if res.code != tt.code {
				t.Errorf("code %d, want %d: %s", res.code, tt.code, res.body)
			}
			if tt.code != 200 {
				res.errorText(t)
			}
			if b, _ := store.Backend("r1"); b.Weight != tt.weight {
				t.Errorf("weight %d, want %d", b.Weight, tt.weight)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	store := newStore(t)
	_, url := start(t, writeToken(t, testToken), Deps{Store: store, Reload: func() ([]string, error) { return nil, nil }})
	_, noTokURL := start(t, "", Deps{Store: store})
	for _, tt := range []struct {
		name, url, token string
		code             int
		msg              string
	}{
		{"no token is 401", url, "", 401, "bearer token"},
		{"a wrong token is 401", url, "wrong", 401, "bearer token"},
		{"a token that is a prefix of the right one is 401", url, testToken[:5], 401, "bearer token"},
		{"no token configured refuses every mutating call", noTokURL, testToken, 403, "admin.token_file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, c := range []struct{ method, path string }{
				{"POST", "/api/v1/backends/r1/drain"},
				{"POST", "/api/v1/backends/r1/down"},
				{"POST", "/api/v1/backends/r1/weight"},
				{"POST", "/api/v1/node/drain"},
				{"POST", "/api/v1/reload"},
				{"DELETE", "/api/v1/cache"},
			} {
				res := do(t, c.method, tt.url+c.path, tt.token, "")
				if res.code != tt.code || !strings.Contains(res.errorText(t), tt.msg) {
					t.Errorf("%s %s: %d %s", c.method, c.path, res.code, res.body)
				}
				if strings.Contains(string(res.body), testToken) {
					t.Errorf("%s %s: the answer echoes the token", c.method, c.path)
				}
			}
			if a := mustAdmin(t, store, "r1"); a != state.AdminAuto {
				t.Errorf("r1 admin = %q: a refused call changed the store", a)
			}
			if b, _ := store.Backend("r1"); b.Weight != 1 {
				t.Errorf("r1 weight changed to %d", b.Weight)
			}
			if store.Node(nil).Drained {
				t.Error("a refused call drained the node")
			}
		})
	}
	t.Run("401 carries WWW-Authenticate", func(t *testing.T) {
		res := do(t, "POST", url+"/api/v1/node/drain", "", "")
		if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("header %q", res.header.Get("WWW-Authenticate"))
		}
	})
	t.Run("the right token is accepted, scheme in any case", func(t *testing.T) {
		req, _ := http.NewRequest("POST", url+"/api/v1/backends/r1/drain", nil)
		req.Header.Set("Authorization", "bearer "+testToken)
		res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 || mustAdmin(t, store, "r1") != state.AdminDrain {
			t.Errorf("code %d, admin %q", res.StatusCode, mustAdmin(t, store, "r1"))
		}
	})
	t.Run("reads need a token once one is configured", func(t *testing.T) {
		for _, p := range []string{"/api/v1/backends", "/api/v1/node", "/api/v1/bgp", "/metrics"} {
			if res := do(t, "GET", url+p, "", ""); res.code != 401 {
				t.Errorf("GET %s without a token: %d", p, res.code)
			}
			if res := do(t, "GET", url+p, testToken, ""); res.code != 200 {
				t.Errorf("GET %s: %d", p, res.code)
			}
		}
		if res := do(t, "GET", url+"/healthz", "", ""); res.code != 200 {
			t.Errorf("GET /healthz without a token: %d", res.code)
		}
	})
	t.Run("the dashboard page asks a browser for the token by HTTP Basic", func(t *testing.T) {
		res := do(t, "GET", url+"/", "", "")
		if res.code != 401 || !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("without a token: %d %q", res.code, res.header.Get("WWW-Authenticate"))
		}
		for _, tok := range []string{testToken, "wrong"} {
			req, _ := http.NewRequest("GET", url+"/", nil)
			req.SetBasicAuth("operator", tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[string]int{testToken: 200, "wrong": 401}[tok]; resp.StatusCode != want {
				t.Errorf("Basic with token %q: %d, want %d", tok, resp.StatusCode, want)
			}
		}
		// Credentials a browser replays by itself never change anything.
		req, _ := http.NewRequest("POST", url+"/api/v1/node/drain", nil)
		req.SetBasicAuth("operator", testToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("POST with Basic credentials: %d, want 401", resp.StatusCode)
		}
	})
}

func TestNewRejectsBadTokenFiles(t *testing.T) {
	store := newStore(t)
	for _, tt := range []struct{ name, content string }{
		{"an empty token file", "  \n"},
		{"a token file with two words", "one two\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(config.Admin{TokenFile: writeToken(t, tt.content)}, Deps{Store: store, Log: quietLog()})
			if err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	t.Run("a missing token file", func(t *testing.T) {
		if _, err := New(config.Admin{TokenFile: "/nonexistent/token"}, Deps{Store: store, Log: quietLog()}); err == nil {
			t.Fatal("New accepted it")
		}
	})
}

func TestRouting(t *testing.T) {
	_, url := start(t, writeToken(t, testToken), Deps{})
	for _, tt := range []struct {
		name, method, path string
		code               int
	}{
		{"an unknown path is a JSON 404", "GET", "/api/v1/nope", 404},
		{"GET on a POST endpoint is a JSON 405", "GET", "/api/v1/backends/r1/drain", 405},
		{"DELETE on backends is a JSON 405", "DELETE", "/api/v1/backends", 405},
		{"POST on the dashboard is a JSON 405", "POST", "/", 405},
		{"healthz answers 200", "GET", "/healthz", 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := do(t, tt.method, url+tt.path, "", "")
			if res.code != tt.code {
				t.Fatalf("%d %s", res.code, res.body)
			}
			var m map[string]any
			res.json(t, &m)
			if tt.code == 405 && res.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
	t.Run("the dashboard is a self-contained page", func(t *testing.T) {
		res := do(t, "GET", url+"/", testToken, "")
		body := string(res.body)
		if res.code != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") ||
			!strings.Contains(body, "api/v1/backends") || strings.Contains(body, "http://") || strings.Contains(body, "https://") ||
			res.header.Get("Content-Security-Policy") == "" {
			t.Errorf("%d %q", res.code, res.header)
		}
	})
}

func TestMetrics(t *testing.T) {
	live := &fakeLive{}
	live.set("r1", BackendLive{Outstanding: 3, LatencyUS: 2500, Queries: 9})
	store := newStore(t)
	if _, err := store.SetAdmin("r2", state.AdminDrain); err != nil {
		t.Fatal(err)
	}
	_, url := start(t, "", Deps{Store: store, Live: live})
	do(t, "GET", url+"/healthz", "", "")
	body := string(do(t, "GET", url+"/metrics", "", "").body)
	for _, want := range []string{
		`anyfront_backend_up{backend="r1",pool="default"} 1`,
		`anyfront_backend_usable{backend="r2",pool="default"} 0`,
		`anyfront_backend_admin_state{backend="r2",state="drain"} 1`,
		`anyfront_backend_admin_state{backend="r2",state="auto"} 0`,
		`anyfront_backend_outstanding_queries{backend="r1",pool="default"} 3`,
		`anyfront_backend_latency_seconds{backend="r1",pool="default"} 0.0025`,
		`anyfront_backend_queries_total{backend="r1",pool="default"} 9`,
		`anyfront_node_drained 0`,
		`anyfront_admin_requests_total{code="200",route="GET /healthz"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("missing %s", want)
		}
	}
}
