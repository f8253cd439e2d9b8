// Package e2e drives the built binaries, bin/anyfront and bin/anyfrontctl,
// against real unbound resolvers and real load from dnsperf: the product as
// an operator runs it, through its contracts only.
package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

var binDir string

func TestMain(m *testing.M) {
	// Every test here drives the built binaries against real peers: none
	// is a unit test, so -short skips the package, and the build with it.
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped under -short: every test drives the built binaries")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "anyfront-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for _, c := range []string{"anyfront", "anyfrontctl"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, c), "../cmd/"+c).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", c, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// node is a running anyfront daemon.
type node struct {
	t         *testing.T
	dns       string // listen address
	admin     string // admin base URL
	tokenFile string
	token     string
	// readTokenFile holds readToken, admin.read_token_file.
	readTokenFile string
	readToken     string
	cfgPath       string
	cmd           *exec.Cmd
	logs          *syncBuffer
	exited        chan error
}

// startNode runs anyfront with the given pools/healthcheck YAML (everything
// but listen and admin, which it adds) and waits until it serves.
func startNode(t *testing.T, body string) *node {
	t.Helper()
	return startNodeOpts(t, nodeOpts{}, body)
}

// nodeOpts are startNode's extras: a port picked by the caller (so a
// fleet file can name the node before it runs) and keys for admin:.
type nodeOpts struct {
	adminPort  int
	adminExtra string // ", key: value" pairs inside admin: {...}
}

func startNodeOpts(t *testing.T, o nodeOpts, body string) *node {
	t.Helper()
	dnsPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	adminPort := o.adminPort
	if adminPort == 0 {
		if adminPort, err = testlab.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	n := &node{
		t:             t,
		dns:           fmt.Sprintf("127.0.0.1:%d", dnsPort),
		admin:         fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		tokenFile:     filepath.Join(dir, "admin.token"),
		token:         fmt.Sprintf("t%d-secret", time.Now().UnixNano()),
		readTokenFile: filepath.Join(dir, "read.token"),
		readToken:     fmt.Sprintf("t%d-read", time.Now().UnixNano()),
		cfgPath:       filepath.Join(dir, "anyfront.yaml"),
		logs:          &syncBuffer{},
		exited:        make(chan error, 1),
	}
	if err := os.WriteFile(n.tokenFile, []byte(n.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.readTokenFile, []byte(n.readToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	readTokens.Store(fmt.Sprintf("127.0.0.1:%d", adminPort), n.readToken)
	cfg := fmt.Sprintf("listen: [{address: %q}]\nadmin: {listen: \"127.0.0.1:%d\", token_file: %q, read_token_file: %q%s}\n%s",
		n.dns, adminPort, n.tokenFile, n.readTokenFile, o.adminExtra, body)
	if err := os.WriteFile(n.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.launch()
	return n
}

// launch starts the daemon on n's config file and waits until its admin
// API answers; a test restarts a node by killing it and launching again.
func (n *node) launch() {
	t := n.t
	t.Helper()
	n.exited = make(chan error, 1)
	exited := n.exited
	n.cmd = exec.Command(filepath.Join(binDir, "anyfront"), "-config", n.cfgPath)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testlab.StartCmd(n.cmd); err != nil {
		t.Fatal(err)
	}
	cmd := n.cmd
	done := make(chan struct{}) // the test itself may take from exited
	go func() { exited <- cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("anyfront logs:\n%s", n.logs.String())
		}
	})
	n.waitFor("the admin API to answer", 10*time.Second, func() bool {
		resp, err := readGet(n.admin + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// waitFor polls cond until it holds or the deadline passes.
func (n *node) waitFor(what string, within time.Duration, cond func() bool) time.Duration {
	n.t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			n.t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
	return time.Since(start)
}

type backendView struct {
	Name    string  `json:"name"`
	Health  string  `json:"health"`
	Admin   string  `json:"admin"`
	Checked bool    `json:"checked"`
	QPS     float64 `json:"qps"`
}

func (n *node) backends() map[string]backendView {
	n.t.Helper()
	resp, err := readGet(n.admin + "/api/v1/backends")
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []backendView
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		n.t.Fatal(err)
	}
	out := map[string]backendView{}
	for _, b := range list {
		out[b.Name] = b
	}
	return out
}

// post makes a mutating admin call; token "" sends none.
func (n *node) post(path, token string) (int, string) {
	n.t.Helper()
	req, _ := http.NewRequest("POST", n.admin+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// ctl runs anyfrontctl against the node.
func (n *node) ctl(args ...string) (string, int) {
	n.t.Helper()
	args = append([]string{"-admin", n.admin, "-token-file", n.tokenFile}, args...)
	cmd := exec.Command(filepath.Join(binDir, "anyfrontctl"), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatal(err)
	}
	return string(out), code
}

func pools(backends ...*testlab.Unbound) string {
	var b strings.Builder
	b.WriteString("pools:\n  default:\n    policy: roundrobin\n    backends:\n")
	for i, u := range backends {
		fmt.Fprintf(&b, "      - {name: r%d, address: %q}\n", i+1, u.Addr)
	}
	// Probes ask SOA so that unbound's A-query counter sees only the load.
	b.WriteString("    healthcheck: {qname: \"health.anyfront.test.\", qtype: SOA, interval: 1s, timeout: 500ms, rise: 2, fall: 2}\n")
	return b.String()
}
