package healthcheck

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// leakWait bounds how long TestMain waits for the package's goroutines and
// sockets to go away after the tests: Run returns only after its goroutines
// stop, so anything left after this long has leaked.
const leakWait = 5 * time.Second

// TestMain runs the tests, or the benchmark's responder when started as one,
// and fails the run when the Checker left goroutines or file descriptors
// behind (as miekg/dns's leak test does).
func TestMain(m *testing.M) {
	if os.Getenv(responderEnv) != "" {
		os.Exit(responderMain())
	}
	// The runtime opens its poller's descriptors on first network use;
	// open them now so they are not counted as leaked.
	if c, err := net.ListenPacket("udp4", "127.0.0.1:0"); err == nil {
		c.Close()
	}
	fds := openFDs()
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(fds); err != nil {
			fmt.Fprintln(os.Stderr, "healthcheck: "+err.Error())
			code = 1
		}
	}
	os.Exit(code)
}

func checkLeaks(fdsBefore int) error {
	deadline := time.Now().Add(leakWait)
	for {
		stacks := checkerGoroutines()
		fds := openFDs()
		if len(stacks) == 0 && fds <= fdsBefore {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leaked after the tests: %d file descriptors (had %d before), goroutines:\n%s",
				fds, fdsBefore, strings.Join(stacks, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond) // poll interval, not a settle delay
	}
}

// checkerGoroutines returns the stacks of goroutines running Checker code.
func checkerGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "healthcheck.(*Checker)") {
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
