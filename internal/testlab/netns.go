package testlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// ipTimeout bounds one `ip` command: they are local netlink calls that take
// milliseconds; a hang means something is badly wrong.
const ipTimeout = 10 * time.Second

// MaxIfName is Linux's interface name limit (IFNAMSIZ less the NUL).
const MaxIfName = 15

// Netns is a network namespace created by the lab. Its name starts with the
// test's prefix (see LabPrefix), so a leftover is recognisable and can be
// removed by the next run of the same test.
type Netns struct {
	Name string
}

// LabPrefix is a short name derived from the test's full name, "af" and six
// hex digits, for namespaces and interfaces: unique per test, stable across
// runs (a crashed run's leftovers get the same names and are removed first),
// and short enough for 15-byte interface names. ANYFRONT_LAB_SALT, when set,
// is hashed in too, so two checkouts can run the same root tests at once
// without removing each other's namespaces as leftovers.
func LabPrefix(t testing.TB) string {
	h := fnv.New32a()
	h.Write([]byte(os.Getenv("ANYFRONT_LAB_SALT")))
	h.Write([]byte(t.Name()))
	return fmt.Sprintf("af%06x", h.Sum32()&0xffffff)
}

// ip runs the ip command, in ns unless ns is nil.
func ip(ns *Netns, args ...string) ([]byte, error) {
	bin, err := LookBinary("ip")
	if err != nil {
		return nil, err
	}
	if ns != nil {
		args = append([]string{"-n", ns.Name}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// CreateNetns creates the namespace name, replacing a leftover of that name,
// and brings its loopback up. The caller must Close it.
func CreateNetns(name string) (*Netns, error) {
	if _, err := os.Stat("/run/netns/" + name); err == nil {
		if _, err := ip(nil, "netns", "del", name); err != nil {
			return nil, fmt.Errorf("remove leftover namespace: %w", err)
		}
	}
	if _, err := ip(nil, "netns", "add", name); err != nil {
		return nil, err
	}
	n := &Netns{Name: name}
	if _, err := ip(n, "link", "set", "lo", "up"); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Close deletes the namespace, and with it every interface inside (a veth
// whose other end is elsewhere goes too). Processes still inside keep it
// alive: stop them first.
func (n *Netns) Close() error {
	_, err := ip(nil, "netns", "del", n.Name)
	return err
}

// Command returns a command that runs inside the namespace. `ip netns exec`
// execs the program in place, so the process's PID is the program's.
func (n *Netns) Command(name string, args ...string) (*exec.Cmd, error) {
	bin, err := LookBinary("ip")
	if err != nil {
		return nil, err
	}
	return exec.Command(bin, append([]string{"netns", "exec", n.Name, name}, args...)...), nil
}

// NewNetns creates the namespace LabPrefix(t)+"-"+suffix for the test and
// deletes it when the test ends, pass or fail. It needs root.
func NewNetns(t testing.TB, suffix string) *Netns {
	t.Helper()
	SkipShort(t, "a network namespace")
	RequireRoot(t)
	RequireBinary(t, "ip")
	n, err := CreateNetns(LabPrefix(t) + "-" + suffix)
	if err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("delete network namespace %s: %v", n.Name, err)
		}
	})
	return n
}

// Veth is a veth pair: end A in namespace NSA, end B in NSB (nil: the root
// namespace).
type Veth struct {
	A, B     string
	NSA, NSB *Netns
}

// CreateVeth creates the pair name+"a" / name+"b" with ends in a and b (nil:
// the root namespace), gives each end its addresses (IPv6 without duplicate
// address detection, which would hold them back for a second or more) and
// brings both up. A leftover link of the same name is removed first. Before
// putting an address in the root namespace it refuses one whose subnet is
// already there: two labs on one subnet would steal each other's traffic.
func CreateVeth(name string, a *Netns, aAddrs []netip.Prefix, b *Netns, bAddrs []netip.Prefix) (*Veth, error) {
	v := &Veth{A: name + "a", B: name + "b", NSA: a, NSB: b}
	if len(v.A) > MaxIfName {
		return nil, fmt.Errorf("veth name %q is longer than %d bytes", v.A, MaxIfName)
	}
	for _, end := range []struct {
		ns   *Netns
		name string
	}{{a, v.A}, {b, v.B}} {
		if _, err := ip(end.ns, "link", "show", end.name); err == nil {
			if _, err := ip(end.ns, "link", "del", end.name); err != nil {
				return nil, fmt.Errorf("remove leftover link: %w", err)
			}
		}
	}
	if err := checkRootSubnets(a, aAddrs); err != nil {
		return nil, err
	}
	if err := checkRootSubnets(b, bAddrs); err != nil {
		return nil, err
	}
	args := []string{"link", "add", v.A}
	if a != nil {
		args = append(args, "netns", a.Name)
	}
	args = append(args, "type", "veth", "peer", "name", v.B)
	if b != nil {
		args = append(args, "netns", b.Name)
	}
	if _, err := ip(nil, args...); err != nil {
		return nil, err
	}
	for _, end := range []struct {
		ns    *Netns
		name  string
		addrs []netip.Prefix
	}{{a, v.A, aAddrs}, {b, v.B, bAddrs}} {
		for _, p := range end.addrs {
			args := []string{"addr", "add", p.String(), "dev", end.name}
			if p.Addr().Is6() {
				args = append(args, "nodad")
			}
			if _, err := ip(end.ns, args...); err != nil {
				v.Close()
				return nil, err
			}
		}
		if _, err := ip(end.ns, "link", "set", end.name, "up"); err != nil {
			v.Close()
			return nil, err
		}
	}
	return v, nil
}

// checkRootSubnets fails when an address of addrs goes in the root
// namespace (ns nil) and its subnet is already configured there.
func checkRootSubnets(ns *Netns, addrs []netip.Prefix) error {
	if ns != nil {
		return nil
	}
	for _, p := range addrs {
		out, err := ip(nil, "-o", "addr", "show", "to", p.Masked().String())
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(out)); s != "" {
			return fmt.Errorf("%s is already configured in the root namespace (another lab running?): %s", p.Masked(), s)
		}
	}
	return nil
}

// Close deletes the pair (deleting one end deletes both). A pair already
// gone with its namespace is not an error.
func (v *Veth) Close() error {
	if _, err := ip(v.NSA, "link", "show", v.A); err != nil {
		return nil
	}
	_, err := ip(v.NSA, "link", "del", v.A)
	return err
}

// NewVeth creates a veth pair named after the test (LabPrefix(t)+suffix)
// and deletes it when the test ends, pass or fail. It needs root.
func NewVeth(t testing.TB, suffix string, a *Netns, aAddrs []netip.Prefix, b *Netns, bAddrs []netip.Prefix) *Veth {
	t.Helper()
	SkipShort(t, "a veth pair")
	RequireRoot(t)
	RequireBinary(t, "ip")
	v, err := CreateVeth(LabPrefix(t)+suffix, a, aAddrs, b, bAddrs)
	if err != nil {
		t.Fatalf("create veth: %v", err)
	}
	t.Cleanup(func() {
		if err := v.Close(); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("delete veth %s: %v", v.A, err)
		}
	})
	return v
}
