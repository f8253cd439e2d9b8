package h2

import (
	"os"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestMain fails the run when a connection's goroutines outlive the tests.
func TestMain(m *testing.M) {
	os.Exit(testlab.RunLeakChecked(m, testlab.LeakCheck{
		Name:   "h2",
		Wait:   5 * time.Second,
		Leaked: testlab.StacksContaining("h2.(*conn)", "h2.(*Server)"),
	}))
}
