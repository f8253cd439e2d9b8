package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// proxyGoroutines lists the stacks of running goroutines that run proxy
// code, other than the calling test's. A goroutine whose top frame is one
// of Run's own closures has returned from its work and is running its
// deferred wg.Done: Run's Wait may return before such a goroutine is gone,
// so it is joined, not leaked; those are given a second to leave and then
// listed too.
func proxyGoroutines() []string {
	deadline := time.Now().Add(time.Second)
	for {
		var out []string
		leaving := 0
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if !strings.Contains(g, "anyfront/proxy.") || strings.Contains(g, "anyfront/proxy.TestRun") {
				continue
			}
			if lines := strings.SplitN(g, "\n", 3); len(lines) > 1 && strings.Contains(lines[1], "proxy.(*Proxy).Run.func") && time.Now().Before(deadline) {
				leaving++
				continue
			}
			out = append(out, g)
		}
		if leaving == 0 || len(out) > 0 {
			return out
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRunJoinsItsGoroutines: once Run returns, no goroutine it started is
// left blocked or working, and GOMAXPROCS is as it was. (The
// state watcher's rebuild loop was once left to end on its own; it ended
// within microseconds, so this rarely caught it, but catches any goroutine
// Run forgets to join.)
func TestRunJoinsItsGoroutines(t *testing.T) {
	if left := proxyGoroutines(); len(left) > 0 {
		t.Skipf("another test left proxy goroutines running:\n%s", left[0])
	}
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	yml := fmt.Sprintf("listen: [{address: \"127.0.0.1:%d\"}]\npools:\n  default:\n    backends: [{name: r1, address: \"127.0.0.1:9\"}]\n", port)
	cfg, err := config.Parse("t.yaml", []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	procs := runtime.GOMAXPROCS(0)
	p, err := New(cfg, Deps{Store: store, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for p.started.Load() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// A reload and a state change while serving start the rebuild paths.
	p.Reload(cfg)
	if _, err := store.SetWeight("r1", 7); err != nil {
		t.Fatal(err)
	}
	if got := runtime.GOMAXPROCS(0); got != procs {
		t.Errorf("Run changed GOMAXPROCS from %d to %d: that is the program's to decide", procs, got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if left := proxyGoroutines(); len(left) > 0 {
		t.Fatalf("%d goroutines outlive Run, the first:\n%s", len(left), left[0])
	}
}

func TestProcs(t *testing.T) {
	do53 := func(a string) config.Listen { return config.Listen{Address: netip.MustParseAddrPort(a)} }
	for _, tt := range []struct {
		name string
		cfg  config.Config
		want int
	}{
		{"two do53 addresses on 3 shards: 6 client readers, 3 backend readers",
			config.Config{Listen: []config.Listen{do53("127.0.0.1:53"), do53("[::1]:53")}, Proxy: config.Proxy{Workers: 3}}, cpus + 9},
		{"a DoT listener has no UDP reader",
			config.Config{Listen: []config.Listen{do53("127.0.0.1:53"), {Address: netip.MustParseAddrPort("127.0.0.1:853"), Protocol: "dot"}}, Proxy: config.Proxy{Workers: 2}}, cpus + 4},
		{"default workers", config.Config{Listen: []config.Listen{do53("127.0.0.1:53")}}, cpus + 2*max(1, cpus/2)},
	} {
		if got := Procs(&tt.cfg); got != tt.want {
			t.Errorf("%s: Procs = %d, want %d", tt.name, got, tt.want)
		}
	}
}
