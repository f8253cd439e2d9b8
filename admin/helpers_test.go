package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

const testToken = "s3cret-token-for-tests"

const testConfig = `
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
      - {name: r2, address: "127.0.0.1:5302", weight: 3}
  corp:
    backends:
      - {name: c1, address: "127.0.0.1:5311"}
`

// newStore loads testConfig into a real store.
func newStore(t *testing.T) *state.Store {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	s, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	return s
}

// writeToken writes tok (with the trailing newline editors add) to a file.
func writeToken(t *testing.T, tok string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fakeLive is a LiveStats whose figures tests set.
type fakeLive struct {
	mu sync.Mutex
	m  map[string]BackendLive
}

func (f *fakeLive) BackendLive(name string) (BackendLive, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.m[name]
	return l, ok
}

func (f *fakeLive) set(name string, l BackendLive) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]BackendLive{}
	}
	f.m[name] = l
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a server on a free loopback port until the test ends and
// returns it with its base URL. tokenFile "" means no token configured.
func start(t *testing.T, tokenFile string, deps Deps) (*Server, string) {
	t.Helper()
	return startWith(t, config.Admin{Listen: "127.0.0.1:0", TokenFile: tokenFile}, deps)
}

// startWith is start with the whole admin config.
func startWith(t *testing.T, cfg config.Admin, deps Deps) (*Server, string) {
	t.Helper()
	if deps.Store == nil {
		deps.Store = newStore(t)
	}
	if deps.Log == nil {
		deps.Log = quietLog()
	}
	s, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	select {
	case <-s.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("server not ready")
	}
	if s.Addr() == nil {
		t.Fatalf("Run failed to listen: %v", <-done)
	}
	return s, "http://" + s.Addr().String()
}

// response is a decoded answer.
type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorText returns the "error" field, failing when the body is not a
// JSON error.
func (r response) errorText(t *testing.T) string {
	t.Helper()
	var e apiError
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("no error field in %s", r.body)
	}
	return e.Error
}

// do sends one request; token "" sends no Authorization header.
func do(t *testing.T, method, url, token, body string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	// No keep-alive: the leak check in TestMain must not see idle
	// server connections a test left behind.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{code: res.StatusCode, header: res.Header, body: b}
}

func mustAdmin(t *testing.T, s *state.Store, name string) state.Admin {
	t.Helper()
	b, err := s.Backend(name)
	if err != nil {
		t.Fatal(err)
	}
	return b.Admin
}
