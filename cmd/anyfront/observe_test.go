package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/admin"
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy"
	"github.com/anyfront/anyfront/state"
)

func TestLogLevelFromConfigAndFlag(t *testing.T) {
	parse := func(args ...string) (*logLevel, error) {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		v := fs.String("log-level", "info", "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return newLogLevel(fs, *v)
	}
	t.Run("without the flag the config decides, at start and on reload", func(t *testing.T) {
		l, err := parse()
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		log := newLogger(&out, config.Log{Level: slog.LevelWarn, Format: "json"}, l)
		log.Info("hidden")
		log.Warn("shown", "k", 1)
		var line map[string]any
		if err := json.Unmarshal(out.Bytes(), &line); err != nil || line["msg"] != "shown" || line["k"] != float64(1) {
			t.Fatalf("want one JSON warn line, got %q (%v)", out.String(), err)
		}
		l.apply(config.Log{Level: slog.LevelDebug})
		out.Reset()
		log.Debug("now shown")
		if !strings.Contains(out.String(), "now shown") {
			t.Errorf("a reload to debug did not take: %q", out.String())
		}
	})
	t.Run("the flag wins over the config, reloads included", func(t *testing.T) {
		l, err := parse("-log-level", "error")
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		log := newLogger(&out, config.Log{Level: slog.LevelDebug, Format: "text"}, l)
		l.apply(config.Log{Level: slog.LevelDebug})
		log.Warn("hidden")
		log.Error("shown")
		if s := out.String(); strings.Contains(s, "hidden") || !strings.Contains(s, "level=ERROR msg=shown") {
			t.Errorf("text log %q", s)
		}
	})
	t.Run("a bad flag value is an error", func(t *testing.T) {
		if _, err := parse("-log-level", "loud"); err == nil {
			t.Error("accepted -log-level loud")
		}
	})
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDaemonLogSection runs the daemon with log: {level: warn, format:
// json}, then reloads it with level info, and with -log-level error, which
// the reload must not override.
func TestDaemonLogSection(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	for _, tt := range []struct {
		name       string
		args       []string
		infoLogged bool // after the reload to info
	}{
		{"the config's level applies at start and on reload", nil, true},
		{"-log-level overrides the config across reloads", []string{"-log-level", "error"}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			port, err := testlab.FreePort()
			if err != nil {
				t.Fatal(err)
			}
			listen := fmt.Sprintf("127.0.0.1:%d", port)
			base := daemonConfig(listen, ub.Addr.String(), "127.0.0.0/8")
			cfgPath := writeFile(t, "anyfront.yaml", base+"log: {level: warn, format: json}\n")
			logs := &lockedBuffer{}
			cmd := exec.Command(anyfrontBin(t), append(tt.args, "-config", cfgPath)...)
			cmd.Stdout, cmd.Stderr = logs, logs
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			deadline := time.Now().Add(5 * time.Second)
			for {
				if r, err := ask(listen, "demo.test."); err == nil && r.Rcode == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("daemon not answering; logs:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			if s := logs.String(); strings.Contains(s, "proxy serving") {
				t.Fatalf("an info line was written at level warn:\n%s", s)
			}
			// The reload also shuts loopback out, which shows when it applied.
			reloaded := daemonConfig(listen, ub.Addr.String(), "192.0.2.0/24") + "log: {level: info, format: json}\n"
			if err := os.WriteFile(cfgPath, []byte(reloaded), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			for {
				if r, err := ask(listen, "demo.test."); err == nil && r.Rcode == 5 { // REFUSED
					break
				}
				if time.Now().After(deadline.Add(5 * time.Second)) {
					t.Fatalf("the reload did not apply; logs:\n%s", logs.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
			// Stop it, so every line it would write is written.
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("exit: %v\n%s", err, logs.String())
			}
			s := logs.String()
			if got := strings.Contains(s, `"msg":"config reloaded"`); got != tt.infoLogged {
				t.Errorf("the reload's info line written: %v, want %v; logs:\n%s", got, tt.infoLogged, s)
			}
			if !tt.infoLogged && strings.Contains(s, `"level":"INFO"`) {
				t.Errorf("info lines despite -log-level error:\n%s", s)
			}
			for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
				if line != "" && !json.Valid([]byte(line)) {
					t.Errorf("not a JSON line: %s", line)
				}
			}
		})
	}
}

// TestTopListsServeTheProxysTables checks the glue between the proxy and
// GET /api/v1/top: the admin API gets the proxy's own list, typed.
func TestTopListsServeTheProxysTables(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte("top: {sample: 4}\npools: {default: {backends: [{name: r1, address: \"127.0.0.1:9\"}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := proxy.New(cfg, proxy.Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var api admin.Top = topLists{p}
	if got := api.Top(5); !got.Enabled || got.Sample != 4 || got.WindowSeconds != 60 || got.Clients == nil || got.Names == nil {
		t.Errorf("%+v, want the proxy's tables, on at 1 in 4", got)
	}
}
