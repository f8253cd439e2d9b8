package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// binDir holds the anyfront binary the tests run; anyfrontBin builds it
// on first use.
var (
	binDir    string
	buildOnce sync.Once
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "anyfront-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// anyfrontBin returns the path of anyfront built from this package,
// building it for the first test that asks. Under -short it skips the
// test instead: running the binary is not a unit test, and the build alone
// takes seconds.
func anyfrontBin(t testing.TB) string {
	t.Helper()
	testlab.SkipShort(t, "the anyfront binary")
	bin := filepath.Join(binDir, "anyfront")
	buildOnce.Do(func() {
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	good := writeFile(t, "good.yaml", "pools:\n  default:\n    backends:\n      - {name: r1, address: \"127.0.0.1:5301\"}\n")
	bad := writeFile(t, "bad.yaml", "pools:\n  default:\n    policy: fastest\n    backends:\n      - {name: r1, address: \"127.0.0.1\"}\n")
	for _, tt := range []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"a valid config exits 0", []string{"-check", "-config", good}, 0, []string{"ok"}},
		{"an invalid config prints every error with its line and exits 1", []string{"-check", "-config", bad}, 1,
			[]string{bad + ":3:", bad + ":5:"}},
		{"a missing file exits 1", []string{"-check", "-config", "/nonexistent.yaml"}, 1, []string{"/nonexistent.yaml"}},
		{"-version prints the version", []string{"-version"}, 0, []string{"anyfront "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			cmd := exec.Command(anyfrontBin(t), tt.args...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code {
				t.Errorf("exit %d, want %d; output:\n%s", code, tt.code, out.String())
			}
			for _, s := range tt.contains {
				if !strings.Contains(out.String(), s) {
					t.Errorf("output lacks %q:\n%s", s, out.String())
				}
			}
		})
	}
}

// daemonConfig is a config with the given ACL in front of one backend.
func daemonConfig(listen, backend, acl string) string {
	return fmt.Sprintf("listen: [{address: %q}]\nadmin: {listen: \"127.0.0.1:0\"}\nacl: [%q]\npools:\n  default:\n    backends:\n      - {name: r1, address: %q}\n", listen, acl, backend)
}

func ask(addr, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func TestDaemonReloadAndShutdown(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	ub := testlab.StartUnbound(t, testlab.UnboundOptions{})
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	cfgPath := writeFile(t, "anyfront.yaml", daemonConfig(listen, ub.Addr.String(), "127.0.0.0/8"))

	var logs bytes.Buffer
	cmd := exec.Command(anyfrontBin(t), "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	waitRcode := func(want int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			r, err := ask(listen, "demo.test.")
			if err == nil && r.Rcode == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("want %s: got %v %v\nlogs:\n%s", dns.RcodeToString[want], r, err, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitRcode(dns.RcodeSuccess)

	// An invalid config is rejected and the old one keeps serving.
	if err := os.WriteFile(cfgPath, []byte("pools: {default: {backends: []}}\nbogus: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // nothing observable should change; give it time to try
	waitRcode(dns.RcodeSuccess)
	if !strings.Contains(logs.String(), "reload rejected") {
		t.Errorf("no rejection logged:\n%s", logs.String())
	}

	// A valid config applies: an ACL that excludes loopback refuses us.
	if err := os.WriteFile(cfgPath, []byte(daemonConfig(listen, ub.Addr.String(), "192.0.2.0/24")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitRcode(dns.RcodeRefused)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit within 10s of SIGTERM")
	}
}
