package healthcheck

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// Probe settings for lab tests: fast enough that a scenario takes a second
// or two, slow enough that a loaded CI machine under -race keeps up.
const (
	labInterval = 200 * time.Millisecond
	labTimeout  = 100 * time.Millisecond
	labRise     = 2
	labFall     = 2
	// slack covers scheduling delays on a loaded machine in bounds that
	// are otherwise computed from the settings.
	slack = 700 * time.Millisecond
	// waitLimit bounds waiting for anything that has no computed bound.
	waitLimit = 10 * time.Second
)

// labBackend is one backend line of a test config.
type labBackend struct {
	name string
	addr netip.AddrPort
}

// labHC are the lab's healthcheck keys, in the order they are written.
var labHC = [][2]string{
	{"qname", "health.test."}, {"interval", "200ms"}, {"timeout", "100ms"}, {"rise", "2"}, {"fall", "2"},
}

// pool renders one pool with its backends. hc holds "key: value" pairs
// that replace or add to the lab's healthcheck keys.
func pool(name, hc string, bs ...labBackend) string {
	keys := slices.Clone(labHC)
	for _, kv := range strings.Split(hc, ",") {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if i := slices.IndexFunc(keys, func(p [2]string) bool { return p[0] == k }); i >= 0 {
			keys[i][1] = v
		} else {
			keys = append(keys, [2]string{k, v})
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "  %s:\n    healthcheck: {", name)
	for i, p := range keys {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(p[0] + ": " + p[1])
	}
	sb.WriteString("}\n    backends:\n")
	for _, b := range bs {
		fmt.Fprintf(&sb, "      - {name: %s, address: %q}\n", b.name, b.addr)
	}
	return sb.String()
}

func parse(t testing.TB, pools ...string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte("pools:\n"+strings.Join(pools, "")))
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return cfg
}

// lab is a running Checker over a real store.
type lab struct {
	c     *Checker
	store *state.Store
}

// newLab builds the store and Checker for cfg; prepare may adjust the
// Checker before it runs. The Checker runs until the test ends.
func newLab(t testing.TB, cfg *config.Config, prepare ...func(*Checker)) *lab {
	t.Helper()
	st, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, Deps{Store: st, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range prepare {
		p(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitLimit):
			t.Errorf("Run did not return within %v of cancel", waitLimit)
		}
	})
	return &lab{c: c, store: st}
}

// reload applies cfg to the Checker and then to the store, in the order
// the daemon does.
func (l *lab) reload(t testing.TB, cfg *config.Config) {
	t.Helper()
	l.c.Reload(cfg)
	if err := l.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
}

// row returns the store's row for a backend.
func (l *lab) row(t testing.TB, name string) *state.Backend {
	t.Helper()
	b, err := l.store.Backend(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// status returns the Checker's status of a backend, failing if it has none.
func (l *lab) status(t testing.TB, name string) Status {
	t.Helper()
	s, ok := l.c.Status(name)
	if !ok {
		t.Fatalf("no status for %s", name)
	}
	return s
}

// waitHealth waits until the store holds a checked verdict h for name and
// returns how long that took.
func (l *lab) waitHealth(t testing.TB, name string, h state.Health, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	waitFor(t, within, func() (bool, string) {
		b := l.row(t, name)
		return b.Checked && b.Health == h, fmt.Sprintf("%s: store has health=%s checked=%v reason=%q, want %s; checker: %+v",
			name, b.Health, b.Checked, b.Reason, h, l.status(t, name))
	})
	return time.Since(start)
}

// waitFor polls cond until it holds, failing the test with cond's last
// description when it does not within the limit.
func waitFor(t testing.TB, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, why)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a settle delay
	}
}

// testLogger sends the Checker's logs to the test log.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
