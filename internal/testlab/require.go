package testlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ErrNotInstalled is returned (wrapped, with the program's name) when a
// program the lab needs is not installed.
var ErrNotInstalled = errors.New("not installed: run scripts/install-deps.sh test")

// sbinDirs are searched after $PATH: Debian installs unbound and
// unbound-control in /usr/sbin, which a non-root user's PATH often lacks.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// LookBinary returns the path of the program name, looking in $PATH and then
// in the sbin directories, or an error wrapping ErrNotInstalled.
func LookBinary(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range sbinDirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s %w", name, ErrNotInstalled)
}

// RequireBinary fails the test when the program name is not installed, with
// the command that installs it.
func RequireBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := LookBinary(name); err != nil {
		t.Fatalf("%v", err)
	}
}

// RequireRoot skips the test when it does not run as root. Tests that need
// network namespaces, XDP or privileged ports call it first; make test and CI
// run as root, so they run there.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipped: needs root (network namespaces, XDP, raw sockets); run as root, e.g. sudo make test")
	}
}
