package ebpf

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain fails the run when the tests leave goroutines or file
// descriptors behind: Run must stop everything it started and close every
// map, program and link it opened.
func TestMain(m *testing.M) {
	goroutines, fds := runtime.NumGoroutine(), openFDs()
	code := m.Run()
	// The fuzzing engine leaves its signal handler running.
	fuzzing := flag.Lookup("test.fuzz") != nil && flag.Lookup("test.fuzz").Value.String() != ""
	if code == 0 && !fuzzing {
		deadline := time.Now().Add(5 * time.Second)
		for runtime.NumGoroutine() > goroutines || openFDs() > fds {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				fmt.Fprintf(os.Stderr, "leak: %d goroutines (%d before), %d fds (%d before)\n%s\n",
					runtime.NumGoroutine(), goroutines, openFDs(), fds, buf[:runtime.Stack(buf, true)])
				code = 1
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	os.Exit(code)
}

func openFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}
