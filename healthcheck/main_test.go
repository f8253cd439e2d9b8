package healthcheck

import (
	"os"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// leakWait bounds how long TestMain waits for the package's goroutines and
// sockets to go away after the tests: Run returns only after its goroutines
// stop, so anything left after this long has leaked.
const leakWait = 5 * time.Second

// TestMain runs the tests, or the benchmark's responder when started as one,
// and fails the run when the Checker left goroutines or file descriptors
// behind.
func TestMain(m *testing.M) {
	if os.Getenv(responderEnv) != "" {
		os.Exit(responderMain())
	}
	os.Exit(testlab.RunLeakChecked(m, testlab.LeakCheck{
		Name: "healthcheck", Wait: leakWait, Leaked: testlab.StacksContaining("healthcheck.(*Checker)"),
	}))
}
