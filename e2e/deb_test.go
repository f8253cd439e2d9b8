package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestDebPackage builds the package with make deb, installs it with dpkg,
// checks what it installed, and removes it. Root only: it installs into
// the machine's own /usr and /etc.
func TestDebPackage(t *testing.T) {
	testlab.RequireRoot(t)
	testlab.RequireBinary(t, "dpkg")
	if exec.Command("dpkg", "-s", "anyfront").Run() == nil {
		t.Skip("an anyfront package is already installed on this machine: not touching it")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	version := strings.TrimSpace(run("git", "describe", "--tags", "--always", "--dirty"))
	out := run("make", "-C", "..", "--no-print-directory", "deb", "VERSION="+version)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	deb := filepath.Join("..", lines[len(lines)-1])
	if !strings.HasPrefix(filepath.Base(deb), "anyfront_") || !strings.HasSuffix(deb, ".deb") {
		t.Fatalf("make deb did not name its package last:\n%s", out)
	}
	t.Cleanup(func() { _ = exec.Command("dpkg", "--purge", "anyfront").Run() })
	run("dpkg", "-i", deb)

	t.Run("the installed binaries carry the stamped version", func(t *testing.T) {
		if got := run("/usr/bin/anyfront", "-version"); got != "anyfront "+version+"\n" {
			t.Errorf("anyfront -version = %q, want %q", got, version)
		}
		if got := run("/usr/bin/anyfrontctl", "-version"); got != "anyfrontctl "+version+"\n" {
			t.Errorf("anyfrontctl -version = %q", got)
		}
	})
	t.Run("the example config passes -check", func(t *testing.T) {
		run("/usr/bin/anyfront", "-check", "-config", "/etc/anyfront/anyfront.yaml")
	})
	t.Run("man pages, completion, unit and conffile are in place", func(t *testing.T) {
		for _, p := range []string{"/usr/share/man/man8/anyfront.8.gz", "/usr/share/man/man8/anyfrontctl.8.gz",
			"/usr/share/bash-completion/completions/anyfrontctl", "/lib/systemd/system/anyfront.service"} {
			if _, err := os.Stat(p); err != nil {
				t.Error(err)
			}
		}
		if !strings.Contains(run("dpkg-query", "--showformat=${Conffiles}", "-W", "anyfront"), "/etc/anyfront/anyfront.yaml") {
			t.Error("/etc/anyfront/anyfront.yaml is not a conffile")
		}
		unit, _ := os.ReadFile("/lib/systemd/system/anyfront.service")
		if !strings.Contains(string(unit), "ExecStart=/usr/bin/anyfront ") {
			t.Errorf("the unit does not run /usr/bin/anyfront:\n%s", unit)
		}
	})
	t.Run("the anyfront user exists and the service is left disabled", func(t *testing.T) {
		run("id", "anyfront")
		if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/anyfront.service"); err == nil {
			t.Error("the package enabled the service")
		}
	})
	t.Run("dpkg -r removes the binaries and keeps the conffile", func(t *testing.T) {
		run("dpkg", "-r", "anyfront")
		for _, p := range []string{"/usr/bin/anyfront", "/usr/bin/anyfrontctl", "/usr/share/man/man8/anyfront.8.gz"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s is still there after dpkg -r", p)
			}
		}
		if _, err := os.Stat("/etc/anyfront/anyfront.yaml"); err != nil {
			t.Errorf("dpkg -r removed the conffile: %v", err)
		}
		run("dpkg", "--purge", "anyfront")
		if _, err := os.Stat("/etc/anyfront/anyfront.yaml"); err == nil {
			t.Error("the conffile survived --purge")
		}
	})
}
