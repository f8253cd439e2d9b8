package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/admin"
	"github.com/anyfront/anyfront/bgp/bgpstatus"
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

const token = "ctl-test-token"

const testConfig = `
pools:
  default:
    backends:
      - {name: r1, address: "127.0.0.1:5301"}
      - {name: r2, address: "127.0.0.1:5302", weight: 3}
`

// badConfigErr is a real *config.Errors, as the daemon's reload returns.
func badConfigErr(t *testing.T) error {
	t.Helper()
	_, err := config.Parse("/etc/anyfront/anyfront.yaml", []byte("pools:\n  default:\n    policy: fastest\n    backends: []\nbogus: 1\n"))
	var ce *config.Errors
	if !errors.As(err, &ce) || len(ce.List) < 2 {
		t.Fatalf("want several config errors, got %v", err)
	}
	return err
}

type live struct{}

func (live) BackendLive(name string) (admin.BackendLive, bool) {
	if name == "r1" {
		return admin.BackendLive{Outstanding: 4, LatencyUS: 1250, Queries: 10}, true
	}
	return admin.BackendLive{}, false
}

type bgpStatus struct{}

func (bgpStatus) Status() bgpstatus.Status {
	return bgpstatus.Status{Enabled: true, ASN: 65001,
		Peers:    []bgpstatus.Peer{{Address: "198.51.100.1", ASN: 65000, State: "established"}},
		Prefixes: []bgpstatus.Prefix{{Prefix: "192.0.2.53/32", Announced: true, Reason: "1 of 2 backends up (min 1)"}}}
}

// env is a running admin server and the flags to reach it.
type env struct {
	store     *state.Store
	url       string
	tokenFile string
	reloadErr error
}

func newEnv(t *testing.T, bgp admin.BGPStatus) *env {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{tokenFile: filepath.Join(t.TempDir(), "token")}
	if err := os.WriteFile(e.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.store, err = state.New(); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	s, err := admin.New(config.Admin{Listen: "127.0.0.1:0", TokenFile: e.tokenFile}, admin.Deps{
		Store: e.store, Live: live{}, BGP: bgp,
		Reload:     func() ([]string, error) { return nil, e.reloadErr },
		PurgeCache: func(string) (int, error) { return 7, nil },
		Log:        slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin Run: %v", err)
		}
	})
	<-s.Ready()
	if s.Addr() == nil {
		t.Fatal("admin server did not listen")
	}
	e.url = "http://" + s.Addr().String()
	return e
}

// ctl runs the CLI against the env's server with the right token.
func (e *env) ctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLI(append([]string{"-admin", e.url, "-token-file", e.tokenFile}, args...)...)
}

func runCLI(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestBackends(t *testing.T) {
	e := newEnv(t, nil)
	t.Run("table", func(t *testing.T) {
		code, out, _ := e.ctl(t, "backends")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || len(lines) != 3 {
			t.Fatalf("code %d:\n%s", code, out)
		}
		for _, col := range []string{"NAME", "POOL", "ADDRESS", "HEALTH", "ADMIN", "WEIGHT", "OUTSTANDING", "QPS", "LATENCY_MS"} {
			if !strings.Contains(lines[0], col) {
				t.Errorf("header lacks %s: %q", col, lines[0])
			}
		}
		if f := strings.Fields(lines[1]); len(f) < 9 || f[0] != "r1" || f[3] != "up" || f[4] != "auto" || f[6] != "4" || f[8] != "1.25" {
			t.Errorf("r1 row: %q", lines[1])
		}
	})
	t.Run("json is the API's answer", func(t *testing.T) {
		code, out, _ := e.ctl(t, "-json", "backends")
		var got []map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || len(got) != 2 {
			t.Fatalf("code %d err %v:\n%s", code, err, out)
		}
		if got[0]["name"] != "r1" || got[0]["latency_ms"] != 1.25 {
			t.Errorf("%v", got[0])
		}
	})
}

func TestBackendCommands(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		name  string
		args  []string
		out   string
		admin state.Admin
	}{
		{"drain", []string{"drain", "r1"}, "r1: admin drain, weight 1\n", state.AdminDrain},
		{"drain again says unchanged", []string{"drain", "r1"}, "r1: admin drain, weight 1 (unchanged)\n", state.AdminDrain},
		{"undrain", []string{"undrain", "r1"}, "r1: admin auto, weight 1\n", state.AdminAuto},
		{"down", []string{"down", "r1"}, "r1: admin down, weight 1\n", state.AdminDown},
		{"up, flags after the command", []string{"up", "r1"}, "r1: admin up, weight 1\n", state.AdminUp},
		{"weight", []string{"weight", "r1", "4"}, "r1: admin up, weight 4\n", state.AdminUp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := e.ctl(t, tt.args...)
			if code != 0 || out != tt.out {
				t.Errorf("code %d, out %q, err %q", code, out, errOut)
			}
			if b, _ := e.store.Backend("r1"); b.Admin != tt.admin {
				t.Errorf("store: %q", b.Admin)
			}
		})
	}
	t.Run("json", func(t *testing.T) {
		code, out, _ := runCLI("drain", "r2", "-json", "-admin", e.url, "-token-file", e.tokenFile)
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil || code != 0 || got["admin"] != "drain" || got["changed"] != true {
			t.Errorf("code %d: %s", code, out)
		}
	})
	t.Run("unknown backend", func(t *testing.T) {
		code, _, errOut := e.ctl(t, "drain", "nope")
		if code != exitFailed || !strings.Contains(errOut, `backend "nope" not found`) {
			t.Errorf("code %d: %q", code, errOut)
		}
	})
}

func TestAuthMessages(t *testing.T) {
	e := newEnv(t, nil)
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A PEM file given by mistake: several lines, not a token.
	twoLines := filepath.Join(t.TempDir(), "two-lines")
	if err := os.WriteFile(twoLines, []byte("line one\nline two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"no token file", []string{"-admin", e.url, "drain", "r1"}, "unauthorized: check -token-file"},
		{"a wrong token", []string{"-admin", e.url, "-token-file", wrong, "drain", "r1"}, "unauthorized: check -token-file"},
		{"an unreadable token file", []string{"-admin", e.url, "-token-file", "/nonexistent", "drain", "r1"}, "-token-file"},
		{"a token file of several words", []string{"-admin", e.url, "-token-file", twoLines, "drain", "r1"}, "the token must be a single word"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != exitFailed || !strings.Contains(errOut, tt.msg) || out != "" {
				t.Errorf("code %d, out %q, err %q", code, out, errOut)
			}
			if strings.Contains(errOut, token) {
				t.Error("the token was printed")
			}
			if b, _ := e.store.Backend("r1"); b.Admin != state.AdminAuto {
				t.Errorf("a refused drain changed the store: %q", b.Admin)
			}
		})
	}
	t.Run("env fallbacks", func(t *testing.T) {
		t.Setenv("ANYFRONT_ADMIN", e.url)
		t.Setenv("ANYFRONT_TOKEN_FILE", e.tokenFile)
		if code, out, errOut := runCLI("drain", "r1"); code != 0 {
			t.Errorf("code %d: %q %q", code, out, errOut)
		}
	})
}

func TestNodeBGPReloadCache(t *testing.T) {
	e := newEnv(t, nil)
	withBGP := newEnv(t, bgpStatus{})
	for _, tt := range []struct {
		name string
		e    *env
		args []string
		code int
		out  []string // substrings of stdout
		err  []string // substrings of stderr
	}{
		{"node drain", e, []string{"node", "drain"}, 0, []string{"node: drained", "note: bgp is not configured"}, nil},
		{"node status", e, []string{"node"}, 0, []string{"node: drained since"}, nil},
		{"node undrain", e, []string{"node", "undrain"}, 0, []string{"node: in service"}, nil},
		{"bgp off", e, []string{"bgp"}, 0, []string{"BGP is not configured"}, nil},
		{"bgp on", withBGP, []string{"bgp"}, 0, []string{"asn:", "65001", "peers\nADDRESS", "198.51.100.1", "established", "192.0.2.53/32", "1 of 2 backends up"}, nil},
		{"reload", e, []string{"reload"}, 0, []string{"reloaded"}, nil},
		{"cache purge", e, []string{"cache", "purge"}, 0, []string{"purged 7 entries\n"}, nil},
		{"cache purge suffix", e, []string{"cache", "purge", "Example.COM"}, 0, []string{"purged 7 entries under example.com."}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := tt.e.ctl(t, tt.args...)
			if code != tt.code {
				t.Errorf("code %d, want %d; err %q", code, tt.code, errOut)
			}
			for _, s := range tt.out {
				if !strings.Contains(out, s) {
					t.Errorf("stdout lacks %q:\n%s", s, out)
				}
			}
		})
	}
	if e.store.Node(nil).Drained {
		t.Error("node still drained after undrain")
	}
	t.Run("bgp json", func(t *testing.T) {
		_, out, _ := withBGP.ctl(t, "-json", "bgp")
		var got map[string]any
		if err := json.Unmarshal([]byte(out), &got); err != nil || got["enabled"] != true {
			t.Errorf("%v: %s", err, out)
		}
	})
}

func TestReloadRejected(t *testing.T) {
	e := newEnv(t, nil)
	e.reloadErr = badConfigErr(t)
	var ce *config.Errors
	errors.As(e.reloadErr, &ce)

	code, out, errOut := e.ctl(t, "reload")
	if code != exitFailed || out != "" || !strings.Contains(errOut, "reload rejected: invalid config") {
		t.Fatalf("code %d, out %q, err %q", code, out, errOut)
	}
	for _, ln := range ce.List {
		if !strings.Contains(errOut, "\n"+ln.Error()+"\n") {
			t.Errorf("stderr lacks the line %q:\n%s", ln.Error(), errOut)
		}
	}
	code, out, _ = e.ctl(t, "-json", "reload")
	var body struct {
		Error  string   `json:"error"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &body); err != nil || code != exitFailed || len(body.Errors) != len(ce.List) {
		t.Errorf("json: code %d, %v: %s", code, err, out)
	}
}

func TestUnreachable(t *testing.T) {
	// A port that was free a moment ago: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	start := time.Now()
	code, out, errOut := runCLI("-admin", url, "backends")
	if code != exitUnreachable || out != "" || !strings.Contains(errOut, "cannot reach the admin API at "+url+": ") {
		t.Errorf("code %d, out %q, err %q", code, out, errOut)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("took too long to fail")
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no command", nil, exitUsage, "no command"},
		{"unknown command", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"drain without a name", []string{"drain"}, exitUsage, "usage: anyfrontctl drain NAME"},
		{"drain with two names", []string{"drain", "a", "b"}, exitUsage, "usage: anyfrontctl drain NAME"},
		{"a bad weight", []string{"weight", "r1", "heavy"}, exitUsage, "whole number"},
		{"node sideways", []string{"node", "sideways"}, exitUsage, "node [status|drain|undrain]"},
		{"cache without purge", []string{"cache"}, exitUsage, "cache purge [SUFFIX]"},
		{"a bad -admin", []string{"-admin", "ftp://x", "backends"}, exitUsage, "-admin"},
		{"an unknown flag", []string{"-frob", "backends"}, exitUsage, "flag provided but not defined"},
		{"-h prints help", []string{"-h"}, exitOK, ""},
		{"help prints help", []string{"help"}, exitOK, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.msg) {
				t.Errorf("code %d, err %q", code, errOut)
			}
			if tt.code == exitOK && !strings.Contains(out, "cache purge [SUFFIX]") {
				t.Errorf("help lacks the command list: %q", out)
			}
			// The usage once, on stdout for help, on stderr for a mistake.
			if n := strings.Count(out+errOut, "usage: anyfrontctl [flags]"); n > 1 {
				t.Errorf("usage printed %d times:\n%s\n%s", n, out, errOut)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI("-version")
	if code != exitOK || out != "anyfrontctl "+version+"\n" {
		t.Errorf("code %d, %q", code, out)
	}
}
