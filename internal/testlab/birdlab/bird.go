package birdlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Bounds for starting and asking BIRD.
const (
	// birdReadyTimeout: BIRD answers on its socket within milliseconds
	// of starting; a loaded CI machine gets generous slack.
	birdReadyTimeout = 10 * time.Second
	// birdcTimeout bounds one birdc call.
	birdcTimeout = 5 * time.Second
	// birdStopWait is how long Close waits for BIRD to exit on SIGTERM
	// before it kills it.
	birdStopWait = 3 * time.Second
	// birdLogTailLines of BIRD's log go into LogTail.
	birdLogTailLines = 20
)

// Bird is one running BIRD 2 router, optionally inside a network namespace.
// Its methods are safe for concurrent use.
type Bird struct {
	// Socket is the control socket, for birdc -s.
	Socket string
	// ConfigText is the configuration it runs; Reconfigure replaces it,
	// so do not read it while a Reconfigure may run.
	ConfigText string

	dir, logPath string
	birdc        string
	ns           *testlab.Netns

	mu   sync.Mutex
	proc *testlab.Proc // nil after Close
}

// New writes o's configuration and starts BIRD in ns (nil: the current
// namespace), in the foreground, returning once birdc gets an answer. The
// caller must Close it. Errors wrap ErrNotInstalled when bird is missing and
// carry the tail of BIRD's log when it fails to start.
func New(ns *testlab.Netns, o Options) (*Bird, error) {
	bin, err := testlab.LookBinary("bird")
	if err != nil {
		return nil, err
	}
	birdc, err := testlab.LookBinary("birdc")
	if err != nil {
		return nil, err
	}
	conf, err := Config(o)
	if err != nil {
		return nil, err
	}
	// The control socket path must fit a unix socket address (108 bytes).
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "anyfront-bird-")
	if err != nil {
		return nil, fmt.Errorf("make bird temp dir: %w", err)
	}
	b := &Bird{Socket: filepath.Join(dir, "bird.ctl"), ConfigText: conf, dir: dir,
		logPath: filepath.Join(dir, "bird.log"), birdc: birdc, ns: ns}
	confPath := filepath.Join(dir, "bird.conf") // Reconfigure rewrites it
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write bird config: %w", err)
	}
	logf, err := os.OpenFile(b.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("open bird log: %w", err)
	}
	path, args := bin, []string{"-f", "-c", confPath, "-s", b.Socket}
	if ns != nil {
		// ip netns exec execs bird in place: the PID we hold is bird's.
		cmd, err := ns.Command(bin, args...)
		if err != nil {
			logf.Close()
			os.RemoveAll(dir)
			return nil, err
		}
		path, args = cmd.Path, cmd.Args[1:]
	}
	p, err := testlab.StartProc(path, args, logf)
	logf.Close() // the child has its own copy
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b.proc = p
	if err := b.waitReady(); err != nil {
		tail := b.LogTail()
		b.Close()
		return nil, fmt.Errorf("bird: %w\n--- last lines of its log ---\n%s", err, tail)
	}
	return b, nil
}

// Start starts a lab router for a test (see New), failing the test
// when it cannot, and stops it and removes its files when the test ends.
func Start(t testing.TB, ns *testlab.Netns, o Options) *Bird {
	t.Helper()
	testlab.SkipShort(t, "bird")
	b, err := New(ns, o)
	if err != nil {
		if errors.Is(err, testlab.ErrNotInstalled) {
			testlab.SkipMissing(t, err)
		}
		t.Fatalf("start bird: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bird log (%s):\n%s", b.logPath, b.LogTail())
		}
		b.Close()
	})
	return b
}

func (b *Bird) waitReady() error {
	deadline := time.Now().Add(birdReadyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if b.proc.Exited() {
			return fmt.Errorf("exited during start: %v", b.proc.Err())
		}
		if _, lastErr = b.Birdc("show", "status"); lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("no answer on %s after %s: %v", b.Socket, birdReadyTimeout, lastErr)
}

// Birdc runs one birdc command and returns its output without birdc's
// banner line.
func (b *Bird) Birdc(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), birdcTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, b.birdc, append([]string{"-s", b.Socket}, args...)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("birdc %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	s := string(out)
	if strings.HasPrefix(s, "BIRD ") { // "BIRD 2.0.12 ready."
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s, nil
}

// Routes returns every route BIRD holds, with their attributes
// (birdc show route all).
func (b *Bird) Routes() ([]Route, error) {
	out, err := b.Birdc("show", "route", "all")
	if err != nil {
		return nil, err
	}
	return ParseRoutes(out)
}

// ProtocolState returns a protocol's state and info columns from
// `birdc show protocols NAME`, e.g. "up Established".
func (b *Bird) ProtocolState(name string) (string, error) {
	out, err := b.Birdc("show", "protocols", name)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		// Name Proto Table State Since(2 fields, iso long) Info
		if len(f) >= 5 && f[0] == name {
			return f[3] + " " + f[len(f)-1], nil
		}
	}
	return "", fmt.Errorf("protocol %s not in: %s", name, out)
}

// BGPState returns the BGP session state of a BGP protocol ("Established",
// "OpenConfirm", "Passive", ...), the "BGP state:" line of `birdc show
// protocols all NAME`. Unlike ProtocolState's info column it is never
// hidden behind the last error.
func (b *Bird) BGPState(name string) (string, error) {
	out, err := b.Birdc("show", "protocols", "all", name)
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "BGP state:"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("no BGP state for %s in: %s", name, out)
}

// ImportStats returns how many route updates and withdrawals the protocol
// has received from its neighbour, over all its channels (the "received"
// column of `birdc show protocols all NAME`). Unchanged counters mean the
// neighbour sent nothing: BIRD's own route timestamps also move on internal
// next-hop refreshes, so they cannot tell.
func (b *Bird) ImportStats(name string) (updates, withdraws uint64, err error) {
	out, err := b.Birdc("show", "protocols", "all", name)
	if err != nil {
		return 0, 0, err
	}
	return parseImportStats(out)
}

func parseImportStats(out string) (updates, withdraws uint64, err error) {
	seen := false
	for _, l := range strings.Split(out, "\n") {
		key, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok || (key != "Import updates" && key != "Import withdraws") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, 0, fmt.Errorf("bird stats line %q", l)
		}
		n, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bird stats line %q: %w", l, err)
		}
		if key == "Import updates" {
			updates += n
		} else {
			withdraws += n
		}
		seen = true
	}
	if !seen {
		return 0, 0, fmt.Errorf("no import statistics in: %s", out)
	}
	return updates, withdraws, nil
}

// Reconfigure writes o's configuration over the running one and has BIRD
// load it (birdc configure). BIRD restarts only the protocols whose options
// changed (a new password drops that session), and keeps the others up.
// On a refused config BIRD keeps running the old one and Reconfigure
// returns BIRD's complaint.
func (b *Bird) Reconfigure(o Options) error {
	conf, err := Config(o)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil {
		return errors.New("bird: reconfigure after Close")
	}
	if err := os.WriteFile(filepath.Join(b.dir, "bird.conf"), []byte(conf), 0o600); err != nil {
		return fmt.Errorf("write bird config: %w", err)
	}
	out, err := b.Birdc("configure")
	if err != nil {
		return err
	}
	// "Reconfigured", or "Reconfiguration in progress" while protocols
	// shut down; anything else (a syntax error) means the old config runs.
	if !strings.Contains(out, "Reconfigur") || strings.Contains(out, "error") {
		return fmt.Errorf("bird: configure refused: %s", strings.TrimSpace(out))
	}
	b.ConfigText = conf
	return nil
}

// PID returns BIRD's process ID, or 0 once it has exited or been closed.
func (b *Bird) PID() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.proc == nil || b.proc.Exited() {
		return 0
	}
	return b.proc.PID()
}

// LogTail returns the last lines of BIRD's log.
func (b *Bird) LogTail() string {
	data, err := os.ReadFile(b.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", b.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-birdLogTailLines):], "\n")
}

// Close stops BIRD by PID (SIGTERM, then SIGKILL) and removes its files.
func (b *Bird) Close() {
	b.mu.Lock()
	p := b.proc
	b.proc = nil
	b.mu.Unlock()
	if p != nil {
		if err := p.Signal(syscall.SIGTERM); err == nil || !errors.Is(err, testlab.ErrExited) {
			select {
			case <-p.Done():
			case <-time.After(birdStopWait):
			}
		}
		p.Kill()
	}
	os.RemoveAll(b.dir)
}
