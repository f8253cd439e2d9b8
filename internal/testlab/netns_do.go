package testlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread inside the namespace and returns its error.
// Sockets fn opens stay in the namespace after it returns, so the caller
// can open them here and use them from any goroutine. Goroutines fn starts
// do not inherit the namespace.
//
// The thread goes back to its own namespace afterwards and is handed back
// to the runtime. It must not simply end (a locked goroutine's thread is
// ended when the goroutine returns): the thread may be the one that forked
// a lab process, whose Pdeathsig would then kill it. Only when going back
// fails does the thread end, so that no goroutine runs in the wrong
// namespace.
func (n *Netns) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own network namespace: %w", err)
			return
		}
		defer orig.Close()
		f, err := os.Open("/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open network namespace %s: %w", n.Name, err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", n.Name, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else: stay locked; the thread ends with this goroutine
		errc <- err
	}()
	return <-errc
}

// DialContext dials addr from inside the namespace; it fits
// http.Transport.DialContext, so an HTTP client can reach a server that
// listens only there.
func (n *Netns) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := n.Do(func() error {
		var err error
		c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// ListenPacket opens a packet socket inside the namespace (see
// net.ListenPacket).
func (n *Netns) ListenPacket(network, addr string) (net.PacketConn, error) {
	var c net.PacketConn
	err := n.Do(func() error {
		var err error
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// Sysctl sets a network sysctl inside the namespace, key in dotted form
// ("net.ipv4.ip_forward"). /proc/sys/net shows the namespace of the thread
// that opens it, so the write happens on a thread inside.
func (n *Netns) Sysctl(key, value string) error {
	if !strings.HasPrefix(key, "net.") {
		return fmt.Errorf("sysctl %s: only net.* keys are per namespace", key)
	}
	path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
	return n.Do(func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}

// IP runs `ip -n NAME args...` and returns its output; on a nil Netns,
// `ip args...` in the caller's own namespace.
func (n *Netns) IP(args ...string) (string, error) {
	out, err := ip(n, args...)
	return string(out), err
}
