package testlab

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// leakPoll is how often a leak check looks again while things wind down:
// a poll interval, not a settle delay.
const leakPoll = 20 * time.Millisecond

// LeakCheck describes what a package's TestMain must find gone after its
// tests, as miekg/dns's leak test and cilium/ebpf's test main do: leaked
// goroutines, and file descriptors above the count before the tests.
type LeakCheck struct {
	// Name prefixes the failure message (the package).
	Name string
	// Wait bounds how long goroutines and sockets may take to go away
	// after the tests: components stop asynchronously (GoBGP ends a
	// session's goroutines after StopBgp returns).
	Wait time.Duration
	// Leaked reports whether one goroutine's stack (a block of
	// runtime.Stack's output) is a leak. StacksContaining and
	// StacksExcept build the two usual kinds.
	Leaked func(stack string) bool
}

// StacksContaining is a Leaked that flags goroutines running any of the
// given functions: for a package that knows its own goroutines.
func StacksContaining(markers ...string) func(string) bool {
	return func(g string) bool {
		for _, m := range markers {
			if strings.Contains(g, m) {
				return true
			}
		}
		return false
	}
}

// StacksExcept is a Leaked that flags every goroutine but those running
// any of the allowed functions: for a package whose dependencies start
// goroutines of their own.
func StacksExcept(allowed ...string) func(string) bool {
	contains := StacksContaining(allowed...)
	return func(g string) bool { return !contains(g) }
}

// RunLeakChecked runs the tests and, when they pass, fails the run if
// goroutines or file descriptors leaked. It returns the exit code for
// os.Exit.
func RunLeakChecked(m *testing.M, c LeakCheck) int {
	// The runtime opens its network poller's descriptors on first use;
	// open them now so they are part of the baseline.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	if p, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
		p.Close()
	}
	fds := openFDs()
	code := m.Run()
	if code == 0 {
		if err := c.wait(fds); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", c.Name, err)
			code = 1
		}
	}
	return code
}

func (c LeakCheck) wait(fdsBefore int) error {
	deadline := time.Now().Add(c.Wait)
	for {
		leaked := c.leakedStacks()
		fds := openFDs()
		if len(leaked) == 0 && fds <= fdsBefore {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked after the tests: %d goroutines, %d file descriptors (%d before):\n\n%s",
				len(leaked), fds, fdsBefore, strings.Join(leaked, "\n\n"))
		}
		time.Sleep(leakPoll)
	}
}

func (c LeakCheck) leakedStacks() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "testlab.LeakCheck.leakedStacks(") {
			continue // the goroutine doing the check
		}
		if c.Leaked(g) {
			out = append(out, g)
		}
	}
	return out
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
