package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// attach attaches prog to the interface named iface in the given mode
// (auto: native if the driver has it, else generic) and returns the link
// and the mode in use. It uses a bpf_link, so the kernel detaches the
// program if the process dies, and attaching fails rather than replacing
// a program someone else attached.
func attach(prog *cebpf.Program, iface, mode string, log *slog.Logger) (link.Link, string, error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, "", fmt.Errorf("xdp: interface %q: %w", iface, err)
	}
	try := func(m string) (link.Link, error) {
		flags := link.XDPGenericMode
		if m == "driver" {
			flags = link.XDPDriverMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: flags})
		if err != nil {
			return nil, attachError(iface, m, err)
		}
		return l, nil
	}
	if mode != "auto" {
		l, err := try(mode)
		return l, mode, err
	}
	l, err := try("driver")
	if err == nil {
		return l, "driver", nil
	}
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EPERM) {
		return nil, "", err // generic would fail the same way
	}
	log.Info("xdp: native mode unavailable, using generic", "interface", iface, "reason", err)
	l, err = try("generic")
	return l, "generic", err
}

// attachError explains the usual refusals.
func attachError(iface, mode string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		hint = fmt.Sprintf(" (another XDP program is attached to %s, see `ip link show dev %s`; anyfront does not replace programs it did not attach)", iface, iface)
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		hint = " (" + permissionHint + ")"
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL):
		if mode == "driver" {
			hint = fmt.Sprintf(" (the driver of %s has no native XDP; use mode generic or auto)", iface)
		}
	}
	return fmt.Errorf("xdp: attach to %s in %s mode%s: %w", iface, mode, hint, err)
}
