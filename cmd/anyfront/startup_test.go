package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Issue 16, points 8 and 9: every socket is bound before anything serves;
// systemd hears READY=1 once serving.

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// nodeConfig is a config on the given DNS and admin addresses; its one
// backend answers nothing, so anyfront answers SERVFAIL: an answer all the
// same, which is what these tests look for.
func nodeConfig(t *testing.T, dnsAddr, adminAddr string) string {
	return writeFile(t, "anyfront.yaml", fmt.Sprintf("listen: [{address: %q}]\nadmin: {listen: %q}\npools:\n  default:\n    backends:\n      - {name: r1, address: \"127.0.0.1:9\"}\n", dnsAddr, adminAddr))
}

type daemonProc struct {
	cmd    *exec.Cmd
	out    *syncBuf
	exited chan struct{}
	code   int
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startDaemon(t *testing.T, cfg string, env ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{out: &syncBuf{}, exited: make(chan struct{})}
	d.cmd = exec.Command(anyfrontBin(t), "-config", cfg)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	d.cmd.Env = append(os.Environ(), env...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := d.cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok {
			d.code = ee.ExitCode()
		}
		close(d.exited)
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.exited
		if t.Failed() {
			t.Logf("anyfront output:\n%s", d.out.String())
		}
	})
	return d
}

func waitAnswer(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ask(addr, "demo.test."); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer on %s within 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// secondInstance starts a daemon on cfg while asking its DNS address all
// along; it returns the exit code, the output and how many answers came.
func secondInstance(t *testing.T, cfg, dnsAddr string) (int, string, int64) {
	t.Helper()
	var answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			// dig, as an operator would check, in a tight loop.
			out, _ := exec.Command("dig", "+tries=1", "+time=1", "-p", strings.Split(dnsAddr, ":")[1], "@127.0.0.1", "demo.test").CombinedOutput()
			if strings.Contains(string(out), "status:") {
				answered.Add(1)
			}
		}
	})
	d := startDaemon(t, cfg)
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("the second instance did not exit")
	}
	close(stop)
	wg.Wait()
	return d.code, d.out.String(), answered.Load()
}

func TestSecondInstanceOnTakenAdminPortAnswersNothing(t *testing.T) {
	testlab.RequireBinary(t, "dig")
	adminAddr, dnsA, dnsB := freeAddr(t), freeAddr(t), freeAddr(t)
	startDaemon(t, nodeConfig(t, dnsA, adminAddr))
	waitAnswer(t, dnsA)

	code, out, answered := secondInstance(t, nodeConfig(t, dnsB, adminAddr), dnsB)
	if code == 0 {
		t.Errorf("the second instance exited 0:\n%s", out)
	}
	if answered != 0 {
		t.Errorf("the second instance answered %d digs before it exited", answered)
	}
	want := "admin.listen: listen tcp " + adminAddr + ": bind: address already in use"
	if !strings.Contains(out, want) || strings.Count(out, "listen tcp") != 1 {
		t.Errorf("output lacks %q once:\n%s", want, out)
	}
}

func TestTakenDNSPortErrorSaysListenOnce(t *testing.T) {
	dnsAddr := freeAddr(t)
	// Only TCP is taken: the UDP side binds, and must not serve alone.
	ln, err := net.Listen("tcp", dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := startDaemon(t, nodeConfig(t, dnsAddr, freeAddr(t)))
	select {
	case <-d.exited:
	case <-time.After(15 * time.Second):
		t.Fatal("no exit with the DNS port taken")
	}
	out := d.out.String()
	want := "listen tcp " + dnsAddr + ": bind: address already in use"
	if d.code != 1 || !strings.Contains(out, want) || strings.Count(out, "listen tcp") != 1 {
		t.Errorf("exit %d; want 1 and %q once:\n%s", d.code, want, out)
	}
}

// TestNotifiesSystemd plays systemd: a NOTIFY_SOCKET datagram socket gets
// READY=1 once the daemon answers queries, RELOADING=1 and READY=1 around
// a SIGHUP, STOPPING=1 on SIGTERM.
func TestNotifiesSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	next := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := conn.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), want) {
			t.Fatalf("notify: %q %v, want %q", buf[:n], err, want)
		}
	}
	dnsAddr := freeAddr(t)
	d := startDaemon(t, nodeConfig(t, dnsAddr, freeAddr(t)), "NOTIFY_SOCKET="+sock)
	next("READY=1")
	// READY=1 comes after the listeners are open: a query is answered now.
	if _, err := ask(dnsAddr, "demo.test."); err != nil {
		t.Errorf("no answer right after READY=1: %v", err)
	}
	_ = d.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	<-d.exited
	if d.code != 0 {
		t.Errorf("exit %d after SIGTERM", d.code)
	}
}
