package anycastlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Bounds for one lab node.
const (
	// labNodeReadyTimeout bounds anyfront's start up to its admin API
	// answering (binding only; health and BGP come later).
	labNodeReadyTimeout = 10 * time.Second
	// labHTTPTimeout bounds one admin API call.
	labHTTPTimeout = 5 * time.Second
	// labBackends is how many unbound resolvers each node has.
	labBackends = 2
)

// Node is one anyfront node of the lab, with its backends.
type Node struct {
	Name string // "n1"
	NS   *testlab.Netns
	// Addr4 and Addr6 are the node's addresses on its link to the
	// router (Router4, Router6). The admin API listens on Addr4.
	Addr4, Addr6, Router4, Router6 netip.Addr
	Backends                       []*testlab.Unbound
	// AdminURL is http://ADDR4:8053, reachable from the node's namespace
	// (HTTP, Ctl) and through the router from the client's.
	AdminURL   string
	ConfigFile string
	TokenFile  string
	LogFile    string

	lab  *Lab
	http *http.Client
	proc *testlab.Proc
}

// labBackendName is the i-th (1-based) backend's name on its node: "r1".
func labBackendName(i int) string { return fmt.Sprintf("r%d", i) }

// newNode returns node i (1-based) of l, not started.
func newNode(l *Lab, i int) *Node {
	n := &Node{Name: fmt.Sprintf("n%d", i), lab: l}
	rtr4, node4, rtr6, node6 := labNodeNet(i)
	n.Addr4, n.Addr6, n.Router4, n.Router6 = node4.Addr(), node6.Addr(), rtr4.Addr(), rtr6.Addr()
	n.AdminURL = fmt.Sprintf("http://%s:%d", n.Addr4, labAdminPort)
	n.ConfigFile = filepath.Join(l.Dir, n.Name+".yaml")
	n.TokenFile = filepath.Join(l.Dir, n.Name+".token")
	n.LogFile = filepath.Join(l.Dir, n.Name+".log")
	return n
}

func (n *Node) start() error {
	l := n.lab
	for i := 1; i <= labBackends; i++ {
		who := n.Name + "/" + labBackendName(i)
		u, err := testlab.NewUnbound(testlab.UnboundOptions{Netns: n.NS, Port: labBackendPort + i - 1, ExtraLocalData: []string{
			`local-zone: "` + WhoZone + `" redirect`,
			WhoZone + ` 3600 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 60`,
			WhoZone + ` 0 IN TXT "` + who + `"`,
		}})
		if err != nil {
			return fmt.Errorf("backend %s: %w", who, err)
		}
		l.addCloser(u.Close)
		n.Backends = append(n.Backends, u)
		l.opts.Logf("lab: %s backend r%d on %s in %s (pid %d)", n.Name, i, u.Addr, n.NS.Name, u.PID())
	}

	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return err
	}
	if err := os.WriteFile(n.TokenFile, []byte(hex.EncodeToString(tok[:])+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(n.ConfigFile, []byte(n.config()), 0o600); err != nil {
		return err
	}
	n.http = &http.Client{
		Timeout:   labHTTPTimeout,
		Transport: &http.Transport{DialContext: n.NS.DialContext, DisableKeepAlives: true},
	}
	if err := n.startProcess(); err != nil {
		return err
	}
	l.addCloser(n.Kill)
	return nil
}

// config returns the node's anyfront.yaml.
func (n *Node) config() string {
	o := n.lab.opts
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# The anyfront lab (internal/testlab/anycastlab/node.go): node %s.", n.Name)
	w("listen:")
	w("  - {address: %q}", netip.AddrPortFrom(VIP4, 53).String())
	w("  - {address: %q}", netip.AddrPortFrom(VIP6, 53).String())
	w("acl: [%q, %q, \"127.0.0.0/8\", \"::1/128\"]", labClient4.Masked(), labClient6.Masked())
	w("pools:")
	w("  default:")
	w("    policy: roundrobin")
	w("    backends:")
	for i := 1; i <= labBackends; i++ {
		w("      - {name: %s%s, address: \"127.0.0.1:%d\"}", n.Name, labBackendName(i), labBackendPort+i-1)
	}
	w("    healthcheck: %s", o.HealthCheck)
	w("admin:")
	w("  listen: %q", netip.AddrPortFrom(n.Addr4, labAdminPort).String())
	w("  token_file: %q", n.TokenFile)
	w("bgp:")
	w("  asn: %d", NodeASN)
	w("  router_id: %s", n.Addr4)
	w("  peers: [{address: %s, asn: %d, hold_time: 9s}]", n.Router4, RouterASN)
	w("  announce:")
	w("    - {prefix: %q, pools: [default], min_healthy: 1}", netip.PrefixFrom(VIP4, 32))
	w("    - {prefix: %q, next_hop: %q, pools: [default], min_healthy: 1}", netip.PrefixFrom(VIP6, 128), n.Addr6)
	if o.WithdrawAfter > 0 {
		w("  withdraw_after: %s", o.WithdrawAfter)
	}
	if o.DrainGrace > 0 {
		w("  drain: {community: \"65535:0\", grace: %s}", o.DrainGrace)
	}
	return b.String()
}

// startProcess runs anyfront in the node's namespace and waits until its
// admin API answers.
func (n *Node) startProcess() error {
	logf, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd, err := n.NS.Command(n.lab.opts.Anyfront, "-config", n.ConfigFile)
	if err != nil {
		logf.Close()
		return err
	}
	p, err := testlab.StartProc(cmd.Path, cmd.Args[1:], logf)
	logf.Close()
	if err != nil {
		return err
	}
	n.proc = p
	n.lab.opts.Logf("lab: anyfront %s in %s (pid %d), admin %s", n.Name, n.NS.Name, p.PID(), n.AdminURL)
	deadline := time.Now().Add(labNodeReadyTimeout)
	for {
		if p.Exited() {
			return fmt.Errorf("anyfront exited during start: %v\n%s", p.Err(), n.LogTail(20))
		}
		if code, _, err := n.HTTP("GET", "/healthz"); err == nil && code == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("anyfront admin API not answering within %s\n%s", labNodeReadyTimeout, n.LogTail(20))
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// PID returns anyfront's process ID (0 when not running).
func (n *Node) PID() int {
	if n.proc == nil || n.proc.Exited() {
		return 0
	}
	return n.proc.PID()
}

func (n *Node) exited() bool { return n.proc != nil && n.proc.Exited() }

// Signal sends sig to anyfront.
func (n *Node) Signal(sig syscall.Signal) error {
	if n.proc == nil {
		return testlab.ErrExited
	}
	return n.proc.Signal(sig)
}

// Wait waits up to timeout for anyfront to exit and returns its exit
// code (-1 when killed by a signal).
func (n *Node) Wait(timeout time.Duration) (int, error) {
	select {
	case <-n.proc.Done():
	case <-time.After(timeout):
		return 0, fmt.Errorf("anyfront %s still running after %s", n.Name, timeout)
	}
	var ee *exec.ExitError
	switch {
	case n.proc.Err() == nil:
		return 0, nil
	case errors.As(n.proc.Err(), &ee):
		return ee.ExitCode(), nil
	default:
		return 0, n.proc.Err()
	}
}

// Kill stops anyfront by PID with SIGKILL, without a drain (the lab's
// teardown: the namespaces go next anyway).
func (n *Node) Kill() {
	if n.proc != nil {
		n.proc.Kill()
	}
}

// HTTP makes an admin API call from inside the node's namespace, with the
// token, and returns the status and body.
func (n *Node) HTTP(method, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), labHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.AdminURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	tok, err := os.ReadFile(n.TokenFile)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(body), err
}

// CtlCommand returns the anyfrontctl command line for this node, as run
// from the root namespace (for printing).
func (n *Node) CtlCommand(args ...string) string {
	return strings.Join(append([]string{"ip", "netns", "exec", n.NS.Name, n.lab.opts.Anyfrontctl,
		"-admin", n.AdminURL, "-token-file", n.TokenFile}, args...), " ")
}

// Ctl runs anyfrontctl against the node from inside its namespace and
// returns its combined output and exit code.
func (n *Node) Ctl(args ...string) (string, int, error) {
	if n.lab.opts.Anyfrontctl == "" {
		return "", 0, errors.New("lab: no anyfrontctl binary given")
	}
	cmd, err := n.NS.Command(n.lab.opts.Anyfrontctl, append([]string{"-admin", n.AdminURL, "-token-file", n.TokenFile}, args...)...)
	if err != nil {
		return "", 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*labHTTPTimeout)
	defer cancel()
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode(), nil
	}
	return string(out), 0, err
}

// LogTail returns the last lines of anyfront's log.
func (n *Node) LogTail(lines int) string {
	data, err := os.ReadFile(n.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", n.LogFile, err)
	}
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}
