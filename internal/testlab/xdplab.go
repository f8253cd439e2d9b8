package testlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// XDPLab is two network namespaces, a client and a server, joined by one
// veth pair: the place for tests that attach XDP to the server's end and
// send real packets to it. Addresses come from the documentation ranges:
//
//	client  ClientIf: the given client addresses (198.51.100.0/24, 2001:db8:100::/64)
//	server  ServerIf: 198.51.100.1/24, 2001:db8:100::1/64
//	        lo:       the VIPs 192.0.2.53/32 and 2001:db8:53::53/128
//
// The client routes the VIPs via the server. Both namespaces (and with them
// the veth pair) are deleted by name when the test ends.
type XDPLab struct {
	Client, Server     string // namespace names
	ClientIf, ServerIf string // the veth ends, one in each namespace
	VIP4, VIP6         netip.Addr
	Server4, Server6   netip.Addr // the server's addresses on the veth
}

// Addresses of the XDP lab; the client's are the caller's.
var (
	xdpLabVIP4    = netip.MustParseAddr("192.0.2.53")
	xdpLabVIP6    = netip.MustParseAddr("2001:db8:53::53")
	xdpLabServer4 = netip.MustParseAddr("198.51.100.1")
	xdpLabServer6 = netip.MustParseAddr("2001:db8:100::1")
	xdpLabNet4    = netip.MustParsePrefix("198.51.100.0/24")
	xdpLabNet6    = netip.MustParsePrefix("2001:db8:100::/64")
)

// NewXDPLab builds the lab with the given client addresses (each in
// 198.51.100.0/24 or 2001:db8:100::/64, not the server's). It needs root.
func NewXDPLab(t testing.TB, clientAddrs ...netip.Addr) *XDPLab {
	t.Helper()
	SkipShort(t, "the XDP lab (two network namespaces on a veth)")
	RequireRoot(t)
	RequireBinary(t, "ip")
	var rnd [3]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	// "afx" + 6 hex digits + one letter: unique per test, and within the
	// 15 characters an interface name may have.
	base := "afx" + hex.EncodeToString(rnd[:])
	l := &XDPLab{
		Client: base + "c", Server: base + "s", ClientIf: base + "c", ServerIf: base + "s",
		VIP4: xdpLabVIP4, VIP6: xdpLabVIP6, Server4: xdpLabServer4, Server6: xdpLabServer6,
	}
	for _, ns := range []string{l.Client, l.Server} {
		xdpLabIP(t, "netns", "add", ns)
		t.Cleanup(func() {
			if err := exec.Command(xdpLabIPPath(), "netns", "del", ns).Run(); err != nil {
				t.Errorf("remove network namespace %s: %v", ns, err)
			}
		})
	}
	xdpLabIP(t, "link", "add", l.ClientIf, "netns", l.Client, "type", "veth", "peer", "name", l.ServerIf, "netns", l.Server)
	s, c := []string{"-n", l.Server}, []string{"-n", l.Client}
	for _, args := range [][]string{
		append(s, "link", "set", "lo", "up"),
		append(s, "addr", "add", xdpLabVIP4.String()+"/32", "dev", "lo"),
		append(s, "addr", "add", xdpLabVIP6.String()+"/128", "dev", "lo"),
		append(s, "addr", "add", xdpLabServer4.String()+"/24", "dev", l.ServerIf),
		append(s, "addr", "add", xdpLabServer6.String()+"/64", "dev", l.ServerIf, "nodad"),
		append(s, "link", "set", l.ServerIf, "up"),
		append(c, "link", "set", "lo", "up"),
		append(c, "link", "set", l.ClientIf, "up"),
	} {
		xdpLabIP(t, args...)
	}
	var has4, has6 bool
	for _, a := range clientAddrs {
		switch {
		case xdpLabNet4.Contains(a) && a != xdpLabServer4:
			xdpLabIP(t, append(c, "addr", "add", a.String()+"/24", "dev", l.ClientIf)...)
			has4 = true
		case xdpLabNet6.Contains(a) && a != xdpLabServer6:
			xdpLabIP(t, append(c, "addr", "add", a.String()+"/64", "dev", l.ClientIf, "nodad")...)
			has6 = true
		default:
			t.Fatalf("xdp lab: client address %v is not in %v or %v (or is the server's)", a, xdpLabNet4, xdpLabNet6)
		}
	}
	// A gateway is only reachable once the client has an address beside it.
	if has4 {
		xdpLabIP(t, append(c, "route", "add", xdpLabVIP4.String()+"/32", "via", xdpLabServer4.String())...)
	}
	if has6 {
		xdpLabIP(t, append(c, "-6", "route", "add", xdpLabVIP6.String()+"/128", "via", xdpLabServer6.String())...)
	}
	return l
}

func xdpLabIPPath() string {
	p, err := LookBinary("ip")
	if err != nil {
		return "ip"
	}
	return p
}

// xdpLabIP runs ip with args and fails the test on error.
func xdpLabIP(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(xdpLabIPPath(), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// Do runs fn on an OS thread inside the namespace ns and returns its
// error. Sockets fn opens stay in ns after it returns, so a test can open
// them here and use them from any goroutine. The thread is discarded
// afterwards, never handed back to other goroutines.
func (l *XDPLab) Do(ns string, fn func() error) error {
	errc := make(chan error, 1)
	l.Go(ns, func(err error) {
		if err == nil {
			err = fn()
		}
		errc <- err
	})
	return <-errc
}

// Go runs fn in a new goroutine locked to an OS thread inside the
// namespace ns (err says if entering it failed), for code that must stay
// there, such as a Dataplane's Run, which attaches XDP by interface name.
func (l *XDPLab) Go(ns string, fn func(err error)) {
	go func() {
		// Never unlocked: Go ends the thread when this goroutine returns,
		// so no other goroutine ever runs in the namespace by accident.
		runtime.LockOSThread()
		fn(xdpLabEnter(ns))
	}()
}

// xdpLabEnter moves the calling thread into the named namespace.
func xdpLabEnter(ns string) error {
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", ns, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter network namespace %s: %w", ns, err)
	}
	return nil
}

// LinkDetails returns `ip -d link show dev ifname` in namespace ns. With an
// XDP program attached, its first line has "xdp" (native) or "xdpgeneric"
// after the MTU, and a "prog/xdp id N" line follows.
func (l *XDPLab) LinkDetails(t testing.TB, ns, ifname string) string {
	t.Helper()
	out, err := exec.Command(xdpLabIPPath(), "-n", ns, "-d", "link", "show", "dev", ifname).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s -d link show dev %s: %v: %s", ns, ifname, err, out)
	}
	return string(out)
}

// Netns returns the lab's namespace ns (l.Client or l.Server) as a *Netns,
// for the helpers that take one: UnboundOptions.Netns runs a resolver
// there, Netns.Command runs a daemon there (`ip netns exec`), and
// Netns.DialContext reaches what listens only there. The lab deletes the
// namespace when the test ends; the caller must not Close it.
func (l *XDPLab) Netns(ns string) *Netns { return &Netns{Name: ns} }

// OnLastingThread runs fn on an OS thread that is kept until the test
// ends, and returns fn's error. Start processes through it in tests that
// also use Do, Go or Netns.Do: the lab starts processes with Pdeathsig,
// which the kernel sends when the thread that started the process ends,
// not the process; and Do, Go and Netns.Do end their threads (they lock
// them and leave them in another namespace). A process started from an
// ordinary goroutine is killed whenever one of those later happens to run
// on the thread that started it. fn must not call t.Fatal (it runs on
// another goroutine); the test's cleanups registered after this call run
// before the thread is let go.
func OnLastingThread(t testing.TB, fn func() error) error {
	errc := make(chan error, 1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	go func() {
		runtime.LockOSThread()
		errc <- fn()
		<-release // then end locked: the thread goes with the goroutine
	}()
	return <-errc
}
