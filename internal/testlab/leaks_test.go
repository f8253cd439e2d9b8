package testlab

import (
	"os"
	"strings"
	"testing"
	"time"
)

// parkForLeakTest is a goroutine's body with a name the check can match.
// It closes started first: until the goroutine runs, its stack shows only
// the compiler's wrapper (TestLeakCheck.func1.gowrap1), which the check
// rightly does not match.
func parkForLeakTest(started chan<- struct{}, release <-chan struct{}) {
	close(started)
	<-release
}

func TestLeakCheck(t *testing.T) {
	c := LeakCheck{Name: "t", Wait: 100 * time.Millisecond, Leaked: StacksContaining("testlab.parkForLeakTest(")}
	base := openFDs()
	if err := c.wait(base); err != nil {
		t.Fatalf("nothing leaked yet: %v", err)
	}

	t.Run("a goroutine left running is reported with its stack", func(t *testing.T) {
		started, release := make(chan struct{}), make(chan struct{})
		go parkForLeakTest(started, release)
		<-started
		err := c.wait(base)
		if err == nil || !strings.Contains(err.Error(), "1 goroutines") || !strings.Contains(err.Error(), "parkForLeakTest") {
			t.Errorf("wait = %v", err)
		}
		close(release)
		// Gone within Wait: not a leak.
		if err := c.wait(base); err != nil {
			t.Errorf("after the goroutine ended: %v", err)
		}
	})
	t.Run("a file left open is reported", func(t *testing.T) {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.wait(base); err == nil || !strings.Contains(err.Error(), "file descriptors") {
			t.Errorf("wait = %v", err)
		}
		f.Close()
		if err := c.wait(base); err != nil {
			t.Errorf("after closing: %v", err)
		}
	})
	t.Run("StacksExcept flags all but the allowed", func(t *testing.T) {
		leaked := StacksExcept("allowed.Func(")
		if leaked("goroutine 7 [chan receive]:\nallowed.Func(...)") || !leaked("goroutine 8 [select]:\nother.Func(...)") {
			t.Error("StacksExcept got it backwards")
		}
	})
}
