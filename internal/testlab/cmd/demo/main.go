// Command demo is what `make run` runs: two unbound resolvers serving
// demo.test on 127.0.0.1:5301 and 127.0.0.1:5302, anyfront in front of them
// on 127.0.0.1:5300, its admin API and dashboard on 127.0.0.1:8053. It prints
// what to try, runs until SIGINT or SIGTERM, then stops everything it started
// (by PID) and removes its temp dir.
//
// Usage:
//
//	go run ./internal/testlab/cmd/demo -anyfront bin/anyfront
package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
)

// The demo's addresses are fixed, so the printed dig lines and the README
// always work as written.
const (
	listenAddr = "127.0.0.1:5300"
	adminAddr  = "127.0.0.1:8053"
)

// backends are the resolvers behind anyfront: name and port on 127.0.0.1.
var backends = []struct {
	name string
	port int
}{{"r1", 5301}, {"r2", 5302}}

const (
	// readyTimeout bounds anyfront's start: binding, the first health
	// checks (rise 2 at 1 s intervals) and a first answer.
	readyTimeout = 10 * time.Second
	// probeTimeout is one readiness query's timeout.
	probeTimeout = 300 * time.Millisecond
	// stopGrace is how long anyfront gets to finish in-flight queries after
	// SIGTERM before SIGKILL. The demo has no BGP, so there is no drain to
	// wait for.
	stopGrace = 5 * time.Second
)

func main() { os.Exit(run()) }

// run does the work and returns the exit code, so that every deferred
// cleanup runs before the process exits.
func run() int {
	anyfrontPath := flag.String("anyfront", "bin/anyfront", "path of the anyfront binary (make build writes it)")
	flag.Parse()

	bin, err := filepath.Abs(*anyfrontPath)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(bin); err == nil && fi.IsDir() {
			err = errors.New("is a directory")
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fail("%s not found: run make build first", *anyfrontPath)
		return 1
	case err != nil:
		fail("anyfront binary %s not usable (%v): run make build first", *anyfrontPath, err)
		return 1
	}

	// From here on a Ctrl-C is a request to stop: it is handled at the next
	// step, after which the deferred cleanups stop what was started.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	if err := checkPortsFree(); err != nil {
		fail("%v (is another demo or resolver running?)", err)
		return 1
	}

	dir, err := os.MkdirTemp("", "anyfront-demo-")
	if err != nil {
		fail("%v", err)
		return 1
	}
	defer os.RemoveAll(dir)

	for _, b := range backends {
		u, err := testlab.NewUnbound(testlab.UnboundOptions{Port: b.port})
		if err != nil {
			if errors.Is(err, testlab.ErrNotInstalled) {
				fail("%v (make run installs it: scripts/install-deps.sh run)", err)
			} else {
				fail("start resolver %s: %v", b.name, err)
			}
			return 1
		}
		defer u.Close()
		say("resolver %s on %s (pid %d)", b.name, u.Addr, u.PID())
		if stopRequested(sigs) {
			return 0
		}
	}

	tokenFile := filepath.Join(dir, "admin.token")
	if err := writeToken(tokenFile); err != nil {
		fail("%v", err)
		return 1
	}
	configFile := filepath.Join(dir, "anyfront.yaml")
	if err := os.WriteFile(configFile, []byte(demoConfig(tokenFile)), 0o600); err != nil {
		fail("write config: %v", err)
		return 1
	}

	af, err := startAnyfront(bin, configFile)
	if err != nil {
		fail("%v", err)
		return 1
	}
	defer af.stop()
	say("anyfront %s -config %s (pid %d)", *anyfrontPath, configFile, af.cmd.Process.Pid)

	switch err := waitAnswering(af, sigs); {
	case errors.Is(err, errStopRequested):
		return 0
	case err != nil:
		// The temp dir goes away on exit, so show the config here.
		fail("%v\nanyfront's output is above; the config it was given:\n%s", err, demoConfig(tokenFile))
		return 1
	}

	printTryLines(*anyfrontPath, tokenFile)

	select {
	case sig := <-sigs:
		say("%v: stopping", sig)
		return 0
	case <-af.exited:
		fail("anyfront exited unexpectedly (%s)", exitStatus(af.err))
		return 1
	}
}

// errStopRequested ends start-up early when the user pressed Ctrl-C.
var errStopRequested = errors.New("stop requested")

// stopRequested reports whether a stop signal has arrived, without waiting.
func stopRequested(sigs <-chan os.Signal) bool {
	select {
	case sig := <-sigs:
		say("%v: stopping", sig)
		return true
	default:
		return false
	}
}

// checkPortsFree fails clearly when a demo port is taken, before anything
// starts, rather than with a bind error from deep inside a child's log.
func checkPortsFree() error {
	check := func(network, addr string) error {
		var c interface{ Close() error }
		var err error
		if network == "udp" {
			c, err = net.ListenPacket("udp4", addr)
		} else {
			c, err = net.Listen("tcp4", addr)
		}
		if err != nil {
			return fmt.Errorf("%s %s is in use", network, addr)
		}
		return c.Close()
	}
	addrs := []string{listenAddr}
	for _, b := range backends {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", b.port))
	}
	for _, a := range addrs {
		if err := check("udp", a); err != nil {
			return err
		}
		if err := check("tcp", a); err != nil {
			return err
		}
	}
	return check("tcp", adminAddr)
}

// writeToken writes a fresh random admin token, readable by the owner only.
func writeToken(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("make admin token: %w", err)
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	return nil
}

// demoConfig returns the anyfront config for the demo. It uses only keys
// from the design's config contract, so it keeps loading as the schema grows.
func demoConfig(tokenFile string) string {
	s := fmt.Sprintf(`# anyfront demo configuration, written by internal/testlab/cmd/demo (make run).
listen:
  - address: %q
    protocol: do53
acl: ["127.0.0.0/8", "::1/128"]
pools:
  default:
    policy: roundrobin
    backends:
`, listenAddr)
	for _, b := range backends {
		s += fmt.Sprintf("      - {name: %s, address: \"127.0.0.1:%d\", weight: 1}\n", b.name, b.port)
	}
	s += fmt.Sprintf(`    healthcheck: {qname: %q, qtype: A, interval: 1s, timeout: 500ms, rise: 2, fall: 2, mode: active}
    cache: {size: 10000}
admin:
  listen: %q
  token_file: %q
`, testlab.HealthName, adminAddr, tokenFile)
	return s
}

// anyfront is the running daemon.
type anyfront struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the process has been reaped
	err    error         // Wait's result; read only after exited is closed
}

// startAnyfront starts bin with the config; its output goes to the terminal.
func startAnyfront(bin, configFile string) (*anyfront, error) {
	cmd := exec.Command(bin, "-config", configFile)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: Ctrl-C reaches only the demo, which then
		// stops anyfront before the resolvers behind it.
		Setpgid: true,
		// Killed by the kernel if the demo itself is killed.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start anyfront: %w", err)
	}
	a := &anyfront{cmd: cmd, exited: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		close(a.exited)
	}()
	return a, nil
}

// stop sends SIGTERM, then SIGKILL after stopGrace, and waits until the
// process is reaped. Signals go to its PID only while it is unreaped, so a
// recycled PID is never hit.
func (a *anyfront) stop() {
	select {
	case <-a.exited:
		return
	default:
	}
	say("stopping anyfront (pid %d)", a.cmd.Process.Pid)
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(stopGrace):
		say("anyfront still running %v after SIGTERM: killing it", stopGrace)
		_ = a.cmd.Process.Kill()
		<-a.exited
	}
}

// waitAnswering queries anyfront until it answers demo.test A, it exits,
// the user asks to stop, or readyTimeout passes.
func waitAnswering(a *anyfront, sigs <-chan os.Signal) error {
	c := &dns.Client{Net: "udp", Timeout: probeTimeout}
	q := new(dns.Msg).SetQuestion(testlab.DemoZone, dns.TypeA)
	deadline := time.After(readyTimeout)
	var last string
	for {
		r, _, err := c.Exchange(q, listenAddr)
		switch {
		case err != nil:
			last = err.Error()
		case r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0:
			last = fmt.Sprintf("answered %s with %d records", dns.RcodeToString[r.Rcode], len(r.Answer))
		default:
			return nil
		}
		select {
		case <-a.exited:
			return fmt.Errorf("anyfront exited during start (%s)", exitStatus(a.err))
		case sig := <-sigs:
			say("%v: stopping", sig)
			return errStopRequested
		case <-deadline:
			return fmt.Errorf("anyfront did not answer %s A on %s within %v (last: %s)", testlab.DemoZone, listenAddr, readyTimeout, last)
		case <-time.After(100 * time.Millisecond): // poll interval
		}
	}
}

// exitStatus describes how a process ended, given Wait's error.
func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// printTryLines tells the user what to do with the running demo.
func printTryLines(anyfrontPath, tokenFile string) {
	fmt.Printf(`
anyfront answers on %[1]s, in front of resolvers r1 (127.0.0.1:%[2]d) and r2 (127.0.0.1:%[3]d). Try:

  dig @127.0.0.1 -p 5300 demo.test
  dig @127.0.0.1 -p 5300 www.demo.test AAAA
  dig @127.0.0.1 -p 5300 big.demo.test TXT +ignore   (truncated over UDP)
  dig @127.0.0.1 -p 5300 big.demo.test TXT +tcp
  dashboard and admin API: http://%[4]s/  (token in %[5]s: the browser asks for it, any user name)
`, listenAddr, backends[0].port, backends[1].port, adminAddr, tokenFile)
	ctl := filepath.Join(filepath.Dir(anyfrontPath), "anyfrontctl")
	if _, err := os.Stat(ctl); err == nil {
		fmt.Printf("  %s -token-file %s backends\n", ctl, tokenFile)
	}
	fmt.Printf("\nCtrl-C stops everything.\n\n")
}

// say prints a progress line, marked as the demo's among anyfront's logs.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demo: "+format+"\n", args...)
}

// fail prints an error line.
func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "demo: error: "+format+"\n", args...)
}
