package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
)

// Bounds for starting and stopping the systems under test.
const (
	// readyTimeout covers binding, the first health checks (rise 2 at 1 s
	// intervals) and traffic reaching both backends, on a busy machine.
	readyTimeout = 20 * time.Second
	// stopGrace is how long a proxy gets after SIGTERM before SIGKILL;
	// nothing is in flight when it is stopped, so this is only a backstop.
	stopGrace = 5 * time.Second
	// probeBatch queries are sent per readiness check; each backend must
	// receive at least probeMinShare of them, which health checks (one a
	// second per backend) alone can never produce.
	probeBatch    = 40
	probeMinShare = 10
)

// Health check settings shared by dnsdist and anyfront, so both do the same
// background work: anyfront's documented defaults, spelled out.
const (
	healthInterval = time.Second
	healthTimeout  = 500 * time.Millisecond
	healthRise     = 2
	healthFall     = 2
	// cacheEntries sizes both packet caches when a workload has one.
	cacheEntries = 100_000
)

// sut is one running system under test.
type sut struct {
	name  string
	addr  string     // where dnsperf sends queries
	pid   func() int // the process whose CPU and memory are measured
	close func()     // stops it and removes its files; idempotent
}

// proc is a child process. It is signalled by PID only while it has not
// been reaped, so a recycled PID is never hit.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed once reaped
	logPath string
}

// startProc starts path with args, its output going to logPath.
func startProc(path string, args []string, logPath string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group: Ctrl-C reaches only the harness, which then
		// stops its children itself, in order.
		Setpgid: true,
		// Killed by the kernel if the harness dies without cleaning up.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), logPath: logPath}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits for the exit.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		if !p.exited() {
			_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-p.done
	}
}

// logTail returns the last lines of the process's output, for errors.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// lab is what every system is started against.
type lab struct {
	dir      string // temp dir for configs, logs, data files
	anyfront string // path of bin/anyfront
	// anyfrontBase is the binary an A/B run compares anyfront with
	// (-anyfront-base): system "anyfront-base", configured the same.
	anyfrontBase string
	dnsdist      string
	dnsdistLocal int // dnsdist listener threads (addLocal with reusePort)
	backends     []*testlab.Unbound
	rng          *rand.Rand
	cert         tlsCert // served by both proxies in the encrypted workloads
}

// ports are the loopback ports of one proxy process.
type ports struct {
	dns   int // plain DNS (UDP and TCP): the load, or the readiness probes
	tls   int // the DoT or DoH listener; 0 in the plain DNS workloads
	admin int // anyfront's admin API
}

// systems are measured in this order in round 0; later rounds rotate it.
var systemNames = []string{"direct", "dnsdist", "anyfront"}

// start starts the named system for workload wl and waits until it serves.
func (l *lab) start(ctx context.Context, name string, wl workload) (*sut, error) {
	switch name {
	case "direct":
		// A fresh resolver configured like the backends: "one backend
		// directly", with a peak RSS of its own rather than one inflated
		// by earlier cells.
		u, err := testlab.NewUnbound(testlab.UnboundOptions{Threads: 1})
		if err != nil {
			return nil, err
		}
		return &sut{name: name, addr: u.Addr.String(), pid: u.PID, close: u.Close}, nil
	case "dnsdist":
		return l.startProxy(ctx, name, l.dnsdist, wl, func(conf string) []string {
			return []string{"--supervised", "--disable-syslog", "-C", conf}
		}, l.dnsdistConfig)
	case "anyfront", "anyfront-base":
		bin := l.anyfront
		if name == "anyfront-base" {
			bin = l.anyfrontBase
		}
		return l.startProxy(ctx, name, bin, wl, func(conf string) []string {
			return []string{"-config", conf}
		}, l.anyfrontConfig)
	}
	return nil, fmt.Errorf("unknown system %q", name)
}

// startProxy writes a config, starts the proxy and waits until it forwards
// to both backends. A port taken between FreePort and the bind shows up as
// an early exit, retried once with new ports.
func (l *lab) startProxy(ctx context.Context, name, bin string, wl workload,
	args func(conf string) []string, config func(p ports, wl workload) string) (*sut, error) {
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		var pp ports
		var err error
		for _, port := range []*int{&pp.dns, &pp.tls, &pp.admin} {
			if port == &pp.tls && !wl.encrypted() {
				continue
			}
			if *port, err = testlab.FreePort(); err != nil {
				return nil, err
			}
		}
		conf := filepath.Join(l.dir, fmt.Sprintf("%s-%d.conf", name, pp.dns))
		if err := os.WriteFile(conf, []byte(config(pp, wl)), 0o600); err != nil {
			return nil, err
		}
		p, err := startProc(bin, args(conf), conf+".log")
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", pp.dns)
		err = l.waitForwarding(ctx, p, addr)
		if err == nil && wl.encrypted() {
			// Plain DNS showed health checks passed and round robin
			// reaching both backends; now the listener under test.
			addr = fmt.Sprintf("127.0.0.1:%d", pp.tls)
			err = probeTLS(ctx, wl, addr)
		}
		if err != nil {
			p.stop()
			lastErr = fmt.Errorf("%s: %w\n--- %s ---\n%s", name, err, p.logPath, p.logTail())
			if ctx.Err() != nil {
				return nil, lastErr
			}
			continue
		}
		pid := p.cmd.Process.Pid
		return &sut{name: name, addr: addr, pid: func() int { return pid }, close: p.stop}, nil
	}
	return nil, lastErr
}

// dnsdistConfig is dnsdist's Lua config, the same setup as anyfrontConfig.
// healthCheckMode is not set: it appeared in dnsdist 1.8, and 1.7's only
// mode is the active check every checkInterval that anyfront's mode: active
// also does.
func (l *lab) dnsdistConfig(pp ports, wl workload) string {
	port := pp.dns
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("-- Written by bench/cmd/bench: dnsdist configured like anyfront.")
	w(`setSecurityPollSuffix("")  -- no network: no security-status polling`)
	w(`setACL({"127.0.0.0/8"})`)
	if l.dnsdistLocal <= 1 {
		w(`setLocal("127.0.0.1:%d")`, port)
	} else {
		w(`setLocal("127.0.0.1:%d", {reusePort=true})`, port)
		for i := 1; i < l.dnsdistLocal; i++ {
			w(`addLocal("127.0.0.1:%d", {reusePort=true})`, port)
		}
	}
	// Over TCP, as anyfront pipelines queries on its backend connections,
	// dnsdist may send several at once on one (maxInFlight); plain DNS
	// workloads never use TCP and keep dnsdist's defaults.
	inflight := ""
	if wl.encrypted() {
		for _, line := range dnsdistTLS(wl, pp.tls, l.cert) {
			w("%s", line)
		}
		inflight = fmt.Sprintf(", maxInFlight=%d", tlsInflightPerConn)
	}
	for i, u := range l.backends {
		w(`newServer{address=%q, name="r%d", checkName=%q, checkType="A", checkInterval=%d, checkTimeout=%d, rise=%d, maxCheckFailures=%d%s}`,
			u.Addr.String(), i+1, testlab.HealthName, int(healthInterval.Seconds()),
			healthTimeout.Milliseconds(), healthRise, healthFall, inflight)
	}
	w("setServerPolicy(roundrobin)")
	if wl.cache {
		w("pc = newPacketCache(%d)", cacheEntries)
		w(`getPool(""):setCache(pc)`)
	}
	return b.String()
}

// anyfrontConfig is anyfront's config: proxy workers at their default (one
// per CPU), the admin API on a free port so parallel demos or tests on the
// same machine do not collide with it.
func (l *lab) anyfrontConfig(pp ports, wl workload) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by bench/cmd/bench: anyfront configured like dnsdist.")
	w("listen:")
	w(`  - {address: "127.0.0.1:%d", protocol: do53}`, pp.dns)
	if wl.encrypted() {
		listen, proxy := anyfrontTLS(wl, pp.tls, l.cert)
		w("%s", listen)
		w("%s", proxy)
	}
	w(`acl: ["127.0.0.0/8"]`)
	w("pools:")
	w("  default:")
	w("    policy: roundrobin")
	w("    backends:")
	for i, u := range l.backends {
		w(`      - {name: r%d, address: %q, weight: 1}`, i+1, u.Addr.String())
	}
	w(`    healthcheck: {qname: %q, qtype: A, interval: %v, timeout: %v, rise: %d, fall: %d, mode: active}`,
		testlab.HealthName, healthInterval, healthTimeout, healthRise, healthFall)
	if wl.cache {
		w("    cache: {size: %d}", cacheEntries)
	}
	w("admin:")
	w(`  listen: "127.0.0.1:%d"`, pp.admin)
	return b.String()
}

// errNotForwarding is returned when a proxy answers but not every backend
// receives its share of the probes.
var errNotForwarding = errors.New("not forwarding to every backend")

// waitForwarding sends batches of never-seen names through the proxy until
// every backend's query counter grows by at least probeMinShare in one
// batch: the proxy is up, its health checks have passed, and round robin
// reaches both backends. Readiness is observed, never assumed after a sleep.
func (l *lab) waitForwarding(ctx context.Context, p *proc, addr string) error {
	c := &dns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(readyTimeout)
	last := errors.New("no answer yet")
	for n := 0; time.Now().Before(deadline); n++ {
		if p.exited() {
			return fmt.Errorf("exited during start")
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		before, err := backendQueries(l.backends)
		if err != nil {
			return err
		}
		answered := 0
		for i := range probeBatch {
			q := new(dns.Msg).SetQuestion(fmt.Sprintf("ready-%d-%d-%x.%s", n, i, l.rng.Uint64(), testlab.RandZone), dns.TypeA)
			r, _, err := c.ExchangeContext(ctx, q, addr)
			if err == nil && r.Rcode != dns.RcodeSuccess {
				err = fmt.Errorf("answered %s", dns.RcodeToString[r.Rcode])
			}
			if err != nil {
				last = err
				break
			}
			answered++
		}
		after, err := backendQueries(l.backends)
		if err != nil {
			return err
		}
		ok := answered == probeBatch
		for i := range before {
			if after[i]-before[i] < probeMinShare {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if answered == probeBatch {
			last = fmt.Errorf("%w: backend queries before %v, after %v", errNotForwarding, before, after)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond): // poll interval
		}
	}
	return fmt.Errorf("not ready within %v: %v", readyTimeout, last)
}

// backendQueries returns each backend's total query count.
func backendQueries(bs []*testlab.Unbound) ([]float64, error) {
	out := make([]float64, len(bs))
	for i, u := range bs {
		s, err := u.Stats()
		if err != nil {
			return nil, err
		}
		out[i] = s["total.num.queries"]
	}
	return out, nil
}
