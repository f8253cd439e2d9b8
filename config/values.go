package config

import (
	"math"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"
)

// addrPort parses "IP:port" (IPv6 in brackets). Host names are refused on
// purpose: resolving them would make loading depend on DNS, which is the
// service this process provides. allowZero lets a listener ask the kernel
// for a free port (tests do).
func (d *decoder) addrPort(n *yaml.Node, where string, allowZero bool) (netip.AddrPort, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		if _, err := netip.ParseAddr(s); err == nil {
			d.errorf(n, "%s: %q needs a port (IP:port, IPv6 in brackets like [2001:db8::1]:53)", where, s)
		} else {
			d.errorf(n, "%s: expected IP:port (IPv6 in brackets like [2001:db8::1]:53), got %q", where, s)
		}
		return netip.AddrPort{}, false
	}
	if ap.Port() == 0 && !allowZero {
		d.errorf(n, "%s: port must not be 0 in %q", where, s)
		return netip.AddrPort{}, false
	}
	return ap, true
}

// unusable says why a is not one host anyfront can send to ("" when it is):
// a multicast or broadcast backend would scatter queries, or send them
// nowhere, and answers from it would never match.
func unusable(a netip.Addr) string {
	a = a.Unmap()
	switch {
	case a.IsUnspecified():
		return "unspecified"
	case a.IsMulticast():
		return "multicast"
	case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "broadcast"
	}
	return ""
}

// unicastAddrPort is addrPort for addresses anyfront sends to or filters
// on, where 0.0.0.0 or :: cannot be meant.
func (d *decoder) unicastAddrPort(n *yaml.Node, where string) (netip.AddrPort, bool) {
	ap, ok := d.addrPort(n, where, false)
	if !ok {
		return ap, false
	}
	if why := unusable(ap.Addr()); why != "" {
		d.errorf(n, "%s: %s is not a usable address (%s)", where, ap, why)
		return netip.AddrPort{}, false
	}
	return ap, true
}

func (d *decoder) addr(n *yaml.Node, where string) (netip.Addr, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		d.errorf(n, "%s: expected an IP address, got %q", where, s)
		return netip.Addr{}, false
	}
	return a, true
}

// prefix parses a CIDR, or a bare IP as a single-host prefix. Host bits are
// masked off: in an ACL "10.1.2.3/8" can only mean 10.0.0.0/8.
func (d *decoder) prefix(n *yaml.Node, where string) (netip.Prefix, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return netip.Prefix{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		d.errorf(n, "%s: expected a CIDR like 192.0.2.0/24 or 2001:db8::/32, got %q", where, s)
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

// domain parses a domain name and normalises it to lowercase with a
// trailing dot, the form the proxy compares question names in.
func (d *decoder) domain(n *yaml.Node, where string) (string, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return "", false
	}
	bad := strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r > '~' })
	if _, valid := dns.IsDomainName(s); s == "" || bad || !valid {
		d.errorf(n, "%s: %q is not a valid domain name", where, s)
		return "", false
	}
	return strings.ToLower(dns.Fqdn(s)), true
}

// qtype parses a query type mnemonic (A, AAAA, ANY) or the RFC 3597
// generic form TYPE65, case-insensitively.
func (d *decoder) qtype(n *yaml.Node, where string) (uint16, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return 0, false
	}
	u := strings.ToUpper(s)
	if t, ok := dns.StringToType[u]; ok {
		return t, true
	}
	if num, ok := strings.CutPrefix(u, "TYPE"); ok {
		if t, err := strconv.ParseUint(num, 10, 16); err == nil {
			return uint16(t), true
		}
	}
	d.errorf(n, "%s: unknown query type %q (like A, AAAA, MX, ANY or TYPE65)", where, s)
	return 0, false
}

// rcode parses an rcode name (NOERROR, NXDOMAIN, SERVFAIL), case-insensitively.
func (d *decoder) rcode(n *yaml.Node, where string) (int, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return 0, false
	}
	if r, ok := dns.StringToRcode[strings.ToUpper(s)]; ok {
		return r, true
	}
	d.errorf(n, "%s: unknown rcode %q (like NOERROR, NXDOMAIN, SERVFAIL, REFUSED)", where, s)
	return 0, false
}

// path reads a file name; a relative one is taken from the config file's
// directory, so a config and its token or key files can move together.
func (d *decoder) path(n *yaml.Node, where string) (string, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return "", false
	}
	if s == "" {
		d.errorf(n, "%s: must not be empty", where)
		return "", false
	}
	if !filepath.IsAbs(s) {
		s = filepath.Join(d.dir, s)
	}
	return s, true
}

// maxNameLen bounds pool and backend names: they appear in URLs, metric
// labels and log lines, where a short name is all anyone wants.
const maxNameLen = 64

// name checks a pool or backend name. The admin API puts backend names in
// URL paths and Prometheus in label values, so they are kept to a
// character set that needs no escaping anywhere.
func (d *decoder) name(n *yaml.Node, where, s string) bool {
	ok := s != "" && len(s) <= maxNameLen
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || (r != '.' && r != '_' && r != '-')) {
			ok = false
		}
	}
	if !ok {
		d.errorf(n, "%s: name %q must be 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit", where, s, maxNameLen)
	}
	return ok
}

// community checks a BGP community: standard "ASN:VALUE" (RFC 1997, two
// 16-bit halves) or large "ASN:V1:V2" (RFC 8092, three 32-bit parts).
func (d *decoder) community(n *yaml.Node, where string) (string, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return "", false
	}
	parts := strings.Split(s, ":")
	max := uint64(math.MaxUint16)
	if len(parts) == 3 {
		max = math.MaxUint32
	}
	ok = len(parts) == 2 || len(parts) == 3
	for _, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil || v > max {
			ok = false
		}
	}
	if !ok {
		d.errorf(n, "%s: expected a community like 65000:100 or a large community like 65000:1:2, got %q", where, s)
		return "", false
	}
	return s, true
}
