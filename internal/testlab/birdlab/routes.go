package birdlab

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// Route is one route from `birdc show route all`.
type Route struct {
	Table    string // master4, master6
	Prefix   netip.Prefix
	Protocol string // the BGP protocol (neighbour) it came from
	// Since is BIRD's timestamp of the route's last change: equal
	// before and after means the route was not replaced meanwhile.
	Since string
	// From is the neighbour's address when BIRD shows it (a route of
	// one family learnt over a session of the other).
	From     netip.Addr
	Primary  bool // BIRD's best route for the prefix
	NextHops []netip.Addr
	// BGP attributes; communities as "65535:0" and "65001:1:2".
	ASPath      []uint32
	MED         *uint32
	LocalPref   uint32
	Communities []string
}

// HasCommunity reports whether the route carries c ("65535:0" or a large
// community "a:b:c").
func (r Route) HasCommunity(c string) bool {
	for _, x := range r.Communities {
		if x == c {
			return true
		}
	}
	return false
}

func (r Route) String() string {
	med := "-"
	if r.MED != nil {
		med = strconv.FormatUint(uint64(*r.MED), 10)
	}
	return fmt.Sprintf("%s via %v from %s as-path %v med %s local-pref %d communities %v",
		r.Prefix, r.NextHops, r.Protocol, r.ASPath, med, r.LocalPref, r.Communities)
}

// routeHead matches a route's first line, with or without the prefix (a
// second route for the same prefix leaves it blank):
// "192.0.2.53/32  unicast [anyfront 2030-01-02 03:04:05.678] * (100) [AS65001i]".
var routeHead = regexp.MustCompile(`^(\S+)?\s+\w+ \[(\S+) ([^\]]*)\]( \*)? \(\d+`)

// birdPair matches one community in BIRD's notation: "(65535,0)" or
// "(65001, 1, 2)".
var birdPair = regexp.MustCompile(`\(([\d, ]+)\)`)

// ParseRoutes parses the output of `birdc show route all`.
func ParseRoutes(out string) ([]Route, error) {
	var routes []Route
	var table string
	var last netip.Prefix
	cur := -1
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "Table "):
			table = strings.TrimSuffix(strings.TrimPrefix(line, "Table "), ":")
			continue
		case strings.HasPrefix(line, "\t"):
			if cur < 0 {
				return nil, fmt.Errorf("attribute before any route: %q", line)
			}
			if err := parseBirdAttr(&routes[cur], strings.TrimSpace(line)); err != nil {
				return nil, err
			}
			continue
		}
		m := routeHead.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("unexpected line: %q", line)
		}
		if m[1] != "" {
			p, err := netip.ParsePrefix(m[1])
			if err != nil {
				return nil, fmt.Errorf("route prefix in %q: %w", line, err)
			}
			last = p
		} else if !last.IsValid() {
			return nil, fmt.Errorf("route without a prefix: %q", line)
		}
		r := Route{Table: table, Prefix: last, Protocol: m[2], Since: m[3], Primary: m[4] != ""}
		if since, from, ok := strings.Cut(m[3], " from "); ok {
			a, err := netip.ParseAddr(from)
			if err != nil {
				return nil, fmt.Errorf("route source in %q: %w", line, err)
			}
			r.Since, r.From = since, a
		}
		routes = append(routes, r)
		cur = len(routes) - 1
	}
	return routes, nil
}

func parseBirdAttr(r *Route, attr string) error {
	if rest, ok := strings.CutPrefix(attr, "via "); ok {
		a, err := netip.ParseAddr(strings.Fields(rest)[0])
		if err != nil {
			return fmt.Errorf("next hop in %q: %w", attr, err)
		}
		r.NextHops = append(r.NextHops, a)
		return nil
	}
	key, val, ok := strings.Cut(attr, ": ")
	if !ok {
		return nil // "Type: ..." has a value; anything else is not ours
	}
	switch key {
	case "BGP.as_path":
		for _, f := range strings.Fields(val) {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return fmt.Errorf("as path %q: %w", val, err)
			}
			r.ASPath = append(r.ASPath, uint32(n))
		}
	case "BGP.med":
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return fmt.Errorf("med %q: %w", val, err)
		}
		med := uint32(n)
		r.MED = &med
	case "BGP.local_pref":
		n, err := strconv.ParseUint(val, 10, 32)
		if err != nil {
			return fmt.Errorf("local pref %q: %w", val, err)
		}
		r.LocalPref = uint32(n)
	case "BGP.community", "BGP.large_community":
		for _, m := range birdPair.FindAllStringSubmatch(val, -1) {
			r.Communities = append(r.Communities, strings.ReplaceAll(strings.ReplaceAll(m[1], " ", ""), ",", ":"))
		}
	}
	return nil
}
