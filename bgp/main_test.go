package bgp

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// update rewrites golden files under testdata/ instead of comparing.
var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// leakWait is how long TestMain lets goroutines and sockets wind down:
// GoBGP ends a session's goroutines asynchronously after StopBgp.
const leakWait = 10 * time.Second

// allowedStacks are goroutines that may outlive the tests: GoBGP servers'
// Serve loops, which never return by design (one per process in
// production, one per test server here), and the runtime's and testing's own.
var allowedStacks = []string{
	"server.(*BgpServer).Serve(",
	// testlab starts every child process from one thread kept for life.
	"testlab.StartCmd.func1",
	"testing.(*M).",
	"testing.Main(",
	"runtime.goexit0",
	"os/signal.signal_recv",
	"runtime.ensureSigM",
	"created by runtime.gc",
	"runtime.MHeap_Scavenger",
	"created by testing.(*T).Run",
}

// TestMain fails the package when a test leaves goroutines (GoBGP
// watchers, session goroutines, the controller's own) or sockets behind.
func TestMain(m *testing.M) {
	// The runtime's network poller holds descriptors once used; open it
	// before counting so it is part of the baseline.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	fds := countFDs()
	code := m.Run()
	if code == 0 {
		if err := checkLeaks(fds); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

func checkLeaks(baseFDs int) error {
	deadline := time.Now().Add(leakWait)
	for {
		leaked := leakedGoroutines()
		fds := countFDs()
		if len(leaked) == 0 && fds <= baseFDs {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("leak check: %d goroutines left (fds %d, at start %d):\n\n%s",
				len(leaked), fds, baseFDs, strings.Join(leaked, "\n\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func leakedGoroutines() []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "bgp.leakedGoroutines(") {
			continue // this one
		}
		allowed := false
		for _, s := range allowedStacks {
			if strings.Contains(g, s) {
				allowed = true
				break
			}
		}
		if !allowed {
			out = append(out, g)
		}
	}
	return out
}

func countFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
