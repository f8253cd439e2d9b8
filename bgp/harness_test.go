package bgp

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// waitTimeout bounds every condition wait in these tests: generous, since a
// loaded CI machine is slow, and never reached when things work.
const waitTimeout = 20 * time.Second

// eventually polls cond until it returns "" or the deadline passes, then
// fails with cond's last complaint.
func eventually(t testing.TB, timeout time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogOutput is where test logs go besides a harness's buffer.
func testLogOutput() io.Writer {
	if testing.Verbose() {
		return os.Stderr
	}
	return io.Discard
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func parseConfig(t testing.TB, yml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(strings.TrimLeft(yml, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// harness runs a Controller against the fake session, a fake clock and a
// real state store.
type harness struct {
	t      *testing.T
	store  *state.Store
	clock  *fakeClock
	c      *Controller
	cancel context.CancelFunc
	runErr chan error

	mu       sync.Mutex
	sessions []*fakeSession
	starts   []globalSpec
	// failStart, when set, is returned by the next start instead of a
	// session.
	failStart error
	// logs holds what the controller logged at info and above.
	logs lockedBuffer
}

// lockedBuffer is a bytes.Buffer the controller writes while a test reads.
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

// newHarness starts Run with yml's bgp section; the node serves and
// the peers' sessions are established unless a test changes that.
func newHarness(t *testing.T, yml string) *harness {
	t.Helper()
	cfg := parseConfig(t, yml)
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetServing(true); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, store: store, clock: newFakeClock(), runErr: make(chan error, 1)}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(&h.logs, testLogOutput()), nil))
	c, err := New(cfg.BGP, Deps{Store: store, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	c.clock = h.clock
	c.start = func(_ context.Context, g globalSpec) (session, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.starts = append(h.starts, g)
		if err := h.failStart; err != nil {
			h.failStart = nil
			return nil, err
		}
		s := newFakeSession()
		h.sessions = append(h.sessions, s)
		return s, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- c.Run(ctx) }()
	t.Cleanup(h.stop)
	eventually(t, waitTimeout, func() string {
		if s := h.session(); s == nil || !s.watching() {
			return "Run did not start a session"
		}
		return ""
	})
	for _, p := range cfg.BGP.Peers {
		h.session().peer(p.Address.String(), "established")
	}
	h.sync()
	return h
}

// stop cancels Run and waits for it; safe to call twice.
func (h *harness) stop() {
	h.t.Helper()
	h.cancel()
	select {
	case err, ok := <-h.runErr:
		if ok && err != nil {
			h.t.Errorf("Run: %v", err)
		}
		if ok {
			close(h.runErr)
		}
	case <-time.After(waitTimeout):
		h.t.Fatal("Run did not return after its context was cancelled")
	}
}

// session is the current (last started) fake session.
func (h *harness) session() *fakeSession {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sessions) == 0 {
		return nil
	}
	return h.sessions[len(h.sessions)-1]
}

// sync waits until the controller has acted on everything written so far.
func (h *harness) sync() { h.c.sync() }

func (h *harness) advance(d time.Duration) {
	h.clock.Advance(d)
	h.sync()
}

func (h *harness) health(backend string, up bool) {
	h.t.Helper()
	hl := state.HealthDown
	if up {
		hl = state.HealthUp
	}
	if _, err := h.store.SetHealth(backend, hl, "test"); err != nil {
		h.t.Fatal(err)
	}
	h.sync()
}

func (h *harness) allHealthy(backends ...string) {
	for _, b := range backends {
		h.health(b, true)
	}
}

// wantAnnounced fails unless prefix is announced (or not, when want is
// false), showing the status reason.
func (h *harness) wantAnnounced(prefix string, want bool) Path {
	h.t.Helper()
	p, got := h.session().announced(prefix)
	if got != want {
		h.t.Fatalf("%s announced = %v, want %v (reason: %s)", prefix, got, want, h.reason(prefix))
	}
	return p
}

func (h *harness) reason(prefix string) string {
	for _, p := range h.c.status().Prefixes {
		if p.Prefix == prefix {
			return p.Reason
		}
	}
	return "(prefix not in status)"
}
