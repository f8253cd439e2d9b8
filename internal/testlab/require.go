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
var ErrNotInstalled = errors.New("not installed")

// StrictEnv names the environment variable that turns a missing program
// from a skip into a failure. `make test` (and so CI) sets it to 1: there
// scripts/install-deps.sh has just run, so a missing peer means the install
// went wrong, and skipping would turn the run green without the tests that
// need it.
const StrictEnv = "ANYFRONT_LAB_STRICT"

// debianPackage names the Debian package that installs each program the
// tests run, for the message that tells a developer what to install.
var debianPackage = map[string]string{
	"unbound":         "unbound",
	"unbound-control": "unbound",
	"named":           "bind9",
	"named-checkconf": "bind9-utils",
	"dig":             "dnsutils",
	"kdig":            "knot-dnsutils",
	"dnsperf":         "dnsperf",
	"bird":            "bird2",
	"birdc":           "bird2",
	"chromium":        "chromium",
	"ip":              "iproute2",
	"tc":              "iproute2",
	"nft":             "nftables",
	"prometheus":      "prometheus",
	"promtool":        "prometheus",
	"dnsdist":         "dnsdist",
	"dpkg":            "dpkg",
}

// sbinDirs are searched after $PATH: Debian installs unbound and
// unbound-control in /usr/sbin, which a non-root user's PATH often lacks.
var sbinDirs = []string{"/usr/sbin", "/sbin", "/usr/local/sbin"}

// LookBinary returns the path of the program name, looking in $PATH and then
// in the sbin directories, or an error wrapping ErrNotInstalled that names
// the Debian package to install.
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
	if pkg, ok := debianPackage[name]; ok {
		return "", fmt.Errorf("%s %w (Debian package %s)", name, ErrNotInstalled, pkg)
	}
	return "", fmt.Errorf("%s %w", name, ErrNotInstalled)
}

// Strict reports whether StrictEnv is set (to anything but "" or "0").
func Strict() bool {
	v := os.Getenv(StrictEnv)
	return v != "" && v != "0"
}

// SkipShort skips the test under `go test -short`, which runs the unit
// tests alone: what names the real peer (a resolver, a router, a namespace,
// a built binary) the test would have started. Every Start* and New* of
// this package that takes a testing.TB calls it, so most tests need not.
func SkipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped under -short: needs %s", what)
	}
}

// installHint is how a developer gets every program the tests need.
const installHint = "install it with: sudo scripts/install-deps.sh test"

// SkipMissing ends the test for err, which wraps ErrNotInstalled: a skip,
// or a failure when Strict.
func SkipMissing(t testing.TB, err error) {
	t.Helper()
	if Strict() {
		t.Fatalf("%v; %s (%s is set: a missing program fails the test instead of skipping it)", err, installHint, StrictEnv)
	}
	t.Skipf("skipped: %v; %s", err, installHint)
}

// RequireBinary returns the path of the program name. It skips the test
// under -short (the program is a peer or client of an integration test),
// and when the program is not installed, with the command that installs
// it; under StrictEnv a missing program fails the test instead.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	SkipShort(t, name)
	p, err := LookBinary(name)
	if err != nil {
		SkipMissing(t, err)
	}
	return p
}

// RequireRoot skips the test when it does not run as root. Tests that need
// network namespaces, XDP or privileged ports call it first; make test and CI
// run as root, so they run there. It does not skip under -short: loading an
// XDP program and running it with BPF_PROG_TEST_RUN is a unit test; the
// helpers that build namespaces skip under -short themselves.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipped: needs root (network namespaces, XDP, raw sockets); run as root, e.g. sudo make test")
	}
}
