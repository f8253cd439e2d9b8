package testlab

import (
	"flag"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// outcomeTB stands in for a test's testing.TB so a test can watch a
// Require* helper skip or fail without ending itself.
type outcomeTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (o *outcomeTB) Helper() {}

func (o *outcomeTB) Skipf(format string, args ...any) {
	o.skipped, o.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (o *outcomeTB) Fatalf(format string, args ...any) {
	o.failed, o.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// outcome runs fn as a test body would run and reports how it ended.
func outcome(t *testing.T, fn func(testing.TB)) *outcomeTB {
	o := &outcomeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(o)
	}()
	<-done
	return o
}

// setShort sets -test.short for the rest of the test.
func setShort(t *testing.T, on bool) {
	was := testing.Short()
	if err := flag.Set("test.short", fmt.Sprint(on)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flag.Set("test.short", fmt.Sprint(was)) })
}

// withoutPrograms hides every program from LookBinary for the rest of the
// test, as on a machine where install-deps.sh did not run.
func withoutPrograms(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	was := sbinDirs
	sbinDirs = nil
	t.Cleanup(func() { sbinDirs = was })
}

func TestRequireBinary(t *testing.T) {
	const missing = "anyfront-missing-peer"
	debianPackage[missing] = "anyfront-missing-pkg"
	t.Cleanup(func() { delete(debianPackage, missing) })
	setShort(t, false)

	t.Run("a missing program skips, naming it, its package and the install command", func(t *testing.T) {
		t.Setenv(StrictEnv, "")
		o := outcome(t, func(tb testing.TB) { RequireBinary(tb, missing) })
		if !o.skipped || o.failed {
			t.Fatalf("skipped %v, failed %v: %s", o.skipped, o.failed, o.msg)
		}
		for _, want := range []string{missing, "anyfront-missing-pkg", "scripts/install-deps.sh test"} {
			if !strings.Contains(o.msg, want) {
				t.Errorf("message %q lacks %q", o.msg, want)
			}
		}
	})
	t.Run("under ANYFRONT_LAB_STRICT=1 a missing program fails", func(t *testing.T) {
		t.Setenv(StrictEnv, "1")
		o := outcome(t, func(tb testing.TB) { RequireBinary(tb, missing) })
		if !o.failed || o.skipped {
			t.Fatalf("skipped %v, failed %v: %s", o.skipped, o.failed, o.msg)
		}
		if !strings.Contains(o.msg, missing) || !strings.Contains(o.msg, StrictEnv) {
			t.Errorf("message %q should name the program and %s", o.msg, StrictEnv)
		}
	})
	t.Run("ANYFRONT_LAB_STRICT=0 is not strict", func(t *testing.T) {
		t.Setenv(StrictEnv, "0")
		if o := outcome(t, func(tb testing.TB) { RequireBinary(tb, missing) }); !o.skipped {
			t.Fatalf("skipped %v, failed %v: %s", o.skipped, o.failed, o.msg)
		}
	})
	t.Run("an installed program is returned", func(t *testing.T) {
		t.Setenv(StrictEnv, "1")
		var path string
		o := outcome(t, func(tb testing.TB) { path = RequireBinary(tb, "sh") })
		if o.skipped || o.failed || !strings.HasSuffix(path, "/sh") {
			t.Fatalf("path %q, skipped %v, failed %v: %s", path, o.skipped, o.failed, o.msg)
		}
	})
	t.Run("-short skips even an installed program, strict or not", func(t *testing.T) {
		t.Setenv(StrictEnv, "1")
		setShort(t, true)
		o := outcome(t, func(tb testing.TB) { RequireBinary(tb, "sh") })
		if !o.skipped || !strings.Contains(o.msg, "-short") || !strings.Contains(o.msg, "sh") {
			t.Fatalf("skipped %v, failed %v: %s", o.skipped, o.failed, o.msg)
		}
	})
}
