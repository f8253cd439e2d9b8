// Package testlab starts real processes for integration tests and the
// demo: unbound resolvers serving a fixed test zone on loopback, BIND's
// named, dnsperf, with free ports, temp dirs, and cleanup by PID. Tests
// read as scenarios; the plumbing lives here.
//
// It is also the core the lab packages under it build on: Require* (skip
// or fail when a peer is missing), child processes stopped by PID
// (StartProc), network namespaces and veths (Netns), the XDP lab, and the
// leak checks of TestMain. Those packages are birdlab (BIRD as a BGP
// peer), anycastlab (the multi-node anycast lab) and faultlab (lossy and
// slow backends); testlab imports none of them.
package testlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Bounds for starting and talking to unbound.
const (
	// readyTimeout: unbound with only local zones answers within
	// milliseconds; a loaded CI machine gets generous slack.
	readyTimeout = 10 * time.Second
	// probeTimeout is one readiness query's timeout, short so a slow start
	// is retried often.
	probeTimeout = 200 * time.Millisecond
	// controlTimeout bounds unbound-control; it hangs while unbound is
	// stopped (SIGSTOP), and Stats must then fail rather than block a test.
	controlTimeout = 5 * time.Second
	// startAttempts: with Port 0, a free port can be taken by someone else
	// before unbound binds it; retry with another.
	startAttempts = 3
	// logTailLines of unbound's log go into a start error.
	logTailLines = 20
)

// UnboundOptions configures a lab resolver. The zero value is a working
// single-threaded resolver on a free port.
type UnboundOptions struct {
	// Port on 127.0.0.1 (or Address), for UDP and TCP; 0 picks a free
	// port.
	Port int
	// Address is the IPv4 address to listen on instead of 127.0.0.1,
	// usually one inside Netns (a LossyFarm's backends). Queries from
	// outside 127.0.0.0/8 also need an AccessControl line.
	Address netip.Addr
	// Threads is unbound's num-threads; 0 means 1.
	Threads int
	// ExtraLocalData adds zone data: each entry is a resource record
	// ("x.demo.test. 60 IN A 192.0.2.9", written as local-data) or a whole
	// "local-data:", "local-zone:" or "local-data-ptr:" line.
	ExtraLocalData []string
	// Verbosity is unbound's verbosity (0: errors only).
	Verbosity int
	// Netns runs the resolver inside this network namespace, on that
	// namespace's 127.0.0.1 (nil: the current namespace). Set Port: a free
	// port is looked for in the current namespace.
	Netns *Netns
	// ProxyProtocol makes the resolver take only queries that start with
	// a PROXY protocol v2 header (proxy-protocol-port), over UDP and TCP;
	// it logs and answers as if they came from the address the header
	// names. Without a header a query is dropped.
	ProxyProtocol bool
	// AccessControl adds access-control lines after the default
	// "127.0.0.0/8 allow" ("127.0.0.3/32 refuse"); the most specific
	// prefix wins. Behind PROXY protocol unbound checks both the sender's
	// and the named client's address.
	AccessControl []string
	// LogQueries logs every query with the client address it was taken
	// from (log-queries); QueriesFor reads them back.
	LogQueries bool
	// SubnetStub, when set, resolves names under its zone from the
	// authoritative server it names, sending that server EDNS Client
	// Subnet (unbound's subnetcache module).
	SubnetStub *SubnetStub
}

// Unbound is one running (or killed, restartable) unbound process. Its
// methods are safe for concurrent use.
type Unbound struct {
	// Addr is where it answers, over UDP and TCP: 127.0.0.1:port.
	Addr netip.AddrPort

	bin, controlBin string
	dir             string // temp dir holding config, log, pidfile, socket
	confPath        string
	logPath         string
	ns              *Netns // nil: the current namespace
	pp              bool   // queries need a PROXY header (readiness probes too)

	mu     sync.Mutex
	proc   *Proc // nil before start or after Close
	closed bool
}

// NewUnbound starts an unbound resolver and returns once it answers
// queries. It serves the lab zone data (see DemoZone and the other
// constants) and answers every other name NXDOMAIN without recursing. The
// caller must Close it. Errors wrap ErrNotInstalled when unbound is missing;
// start failures include the tail of unbound's log.
func NewUnbound(opts UnboundOptions) (*Unbound, error) {
	bin, err := LookBinary("unbound")
	if err != nil {
		return nil, err
	}
	controlBin, err := LookBinary("unbound-control")
	if err != nil {
		return nil, err
	}
	if opts.Threads <= 0 {
		opts.Threads = 1
	}
	extra := make([]string, 0, len(opts.ExtraLocalData))
	for _, s := range opts.ExtraLocalData {
		l, err := extraLine(s)
		if err != nil {
			return nil, err
		}
		extra = append(extra, l)
	}
	dir, err := tempDir()
	if err != nil {
		return nil, err
	}
	u := &Unbound{
		bin:        bin,
		controlBin: controlBin,
		dir:        dir,
		confPath:   filepath.Join(dir, "unbound.conf"),
		logPath:    filepath.Join(dir, "unbound.log"),
		ns:         opts.Netns,
		pp:         opts.ProxyProtocol,
	}
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = FreePort(); err != nil {
				break
			}
		}
		listen := netip.AddrFrom4([4]byte{127, 0, 0, 1})
		if opts.Address.IsValid() {
			listen = opts.Address
		}
		conf := unboundConf{dir: dir, addr: listen, port: port, threads: opts.Threads, verbosity: opts.Verbosity, extra: extra,
			pp: opts.ProxyProtocol, logQueries: opts.LogQueries, stub: opts.SubnetStub, acl: opts.AccessControl}
		if err = os.WriteFile(u.confPath, []byte(conf.render()), 0o600); err != nil {
			err = fmt.Errorf("write unbound config: %w", err)
			break
		}
		u.Addr = netip.AddrPortFrom(listen, uint16(port))
		err = u.start()
		if err == nil {
			return u, nil
		}
		if opts.Port != 0 || attempt == startAttempts || !u.logShowsPortInUse() {
			break
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

// StartUnbound starts an unbound resolver for a test, failing the test when
// it cannot, and kills it and removes its files when the test ends.
func StartUnbound(t testing.TB, opts UnboundOptions) *Unbound {
	t.Helper()
	SkipShort(t, "unbound")
	u, err := NewUnbound(opts)
	if err != nil {
		if errors.Is(err, ErrNotInstalled) {
			SkipMissing(t, err)
		}
		t.Fatalf("start unbound: %v", err)
	}
	t.Cleanup(u.Close)
	return u
}

// tempDir makes the resolver's directory. Its control socket path must fit
// in a unix socket address (108 bytes), so a long $TMPDIR falls back to /tmp.
func tempDir() (string, error) {
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "anyfront-unbound-")
	if err != nil {
		return "", fmt.Errorf("make unbound temp dir: %w", err)
	}
	return dir, nil
}

// start runs unbound in the foreground and waits until it answers. On
// failure the process is killed and the error carries the log's tail.
// NewUnbound calls it before u is shared; every later caller holds u.mu.
func (u *Unbound) start() error {
	logf, err := os.OpenFile(u.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open unbound log: %w", err)
	}
	path, args := u.bin, []string{"-d", "-c", u.confPath}
	if u.ns != nil {
		// ip netns exec execs unbound in place: the PID we hold is unbound's.
		cmd, err := u.ns.Command(path, args...)
		if err != nil {
			logf.Close()
			return err
		}
		path, args = cmd.Path, cmd.Args[1:]
	}
	p, err := StartProc(path, args, logf)
	// The child has its own copy of the descriptor; unbound also reopens the
	// log itself (logfile:). Ours is no longer needed either way.
	logf.Close()
	if err != nil {
		return err
	}
	if err := waitReady(p, u.Addr, u.ns, u.pp); err != nil {
		p.Kill()
		return fmt.Errorf("unbound on %s: %w\n--- last lines of %s ---\n%s", u.Addr, err, u.logPath, u.logTail())
	}
	u.proc = p
	return nil
}

// waitReady queries addr (inside ns unless nil) until it answers or the
// process exits or the deadline passes: readiness is observed, never
// assumed after a sleep.
func waitReady(p *Proc, addr netip.AddrPort, ns *Netns, pp bool) error {
	c := &dns.Client{Net: "udp", Timeout: probeTimeout}
	q := new(dns.Msg).SetQuestion(HealthName, dns.TypeA)
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if p.Exited() {
			return fmt.Errorf("exited during start: %v", p.err)
		}
		r, err := probeOnce(c, q, addr, ns, pp)
		if err == nil && (r.Rcode == dns.RcodeSuccess || pp) {
			// Behind PROXY protocol an access-control may refuse the
			// probe's address; any answer shows the resolver is up.
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])
		}
		lastErr = err
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond): // poll interval, not a settle delay
		}
	}
	return fmt.Errorf("no answer within %v: %v", readyTimeout, lastErr)
}

// probeOnce sends q to addr from inside ns (nil: here) and returns the
// answer.
func probeOnce(c *dns.Client, q *dns.Msg, addr netip.AddrPort, ns *Netns, pp bool) (*dns.Msg, error) {
	if pp {
		return probeProxied(q, addr, ns)
	}
	if ns == nil {
		r, _, err := c.Exchange(q, addr.String())
		return r, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	conn, err := ns.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r, _, err := c.ExchangeWithConn(q, &dns.Conn{Conn: conn})
	return r, err
}

// logTail returns the last lines of unbound's log.
func (u *Unbound) logTail() string {
	b, err := os.ReadFile(u.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}

// logShowsPortInUse reports whether unbound failed because its port was
// taken, the one failure worth retrying on another port.
func (u *Unbound) logShowsPortInUse() bool {
	b, _ := os.ReadFile(u.logPath)
	return bytes.Contains(b, []byte("Address already in use")) || bytes.Contains(b, []byte("could not open ports"))
}

// PID returns the process ID of the running unbound, or 0 when it is not
// running (killed, closed).
func (u *Unbound) PID() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.proc == nil || u.proc.Exited() {
		return 0
	}
	return u.proc.PID()
}

// Kill sends SIGKILL and waits for the process to exit: a backend that
// crashed. Restart brings it back.
func (u *Unbound) Kill() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.proc != nil {
		u.proc.Kill()
	}
}

// Stop sends SIGSTOP: the process keeps its sockets but answers nothing,
// like a hung backend. Cont resumes it.
func (u *Unbound) Stop() error { return u.signal(syscall.SIGSTOP) }

// Cont sends SIGCONT to resume a stopped process; queries that arrived
// meanwhile are answered then.
func (u *Unbound) Cont() error { return u.signal(syscall.SIGCONT) }

func (u *Unbound) signal(sig syscall.Signal) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.proc == nil {
		return fmt.Errorf("unbound on %s: %w", u.Addr, ErrExited)
	}
	if err := u.proc.Signal(sig); err != nil {
		return fmt.Errorf("unbound on %s: %w", u.Addr, err)
	}
	return nil
}

// Restart starts unbound again on the same address, killing the running
// process first if there is one, and returns once it answers.
func (u *Unbound) Restart() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return fmt.Errorf("unbound on %s: restart after Close", u.Addr)
	}
	if u.proc != nil {
		u.proc.Kill()
		u.proc = nil
	}
	return u.start()
}

// Close kills the process and removes its temp dir. It is idempotent.
func (u *Unbound) Close() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.proc != nil {
		u.proc.Kill()
		u.proc = nil
	}
	if !u.closed {
		u.closed = true
		os.RemoveAll(u.dir)
	}
}

// Stats returns unbound's counters (unbound-control stats_noreset), e.g.
// "total.num.queries" for the queries it received since it started.
func (u *Unbound) Stats() (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, u.controlBin, "-c", u.confPath, "stats_noreset")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("unbound-control stats on %s: %w: %s", u.Addr, err, strings.TrimSpace(stderr.String()))
	}
	stats := make(map[string]float64)
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue // not a counter
		}
		stats[k] = f
	}
	if len(stats) == 0 {
		return nil, fmt.Errorf("unbound-control stats on %s: no counters in output %q", u.Addr, out)
	}
	return stats, nil
}
