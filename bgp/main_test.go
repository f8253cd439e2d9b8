package bgp

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
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
// Every goroutine not allowed counts: GoBGP starts many of its own.
func TestMain(m *testing.M) {
	os.Exit(testlab.RunLeakChecked(m, testlab.LeakCheck{
		Name: "bgp", Wait: leakWait, Leaked: testlab.StacksExcept(allowedStacks...),
	}))
}
