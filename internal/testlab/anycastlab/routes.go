package anycastlab

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/anyfront/anyfront/internal/testlab/birdlab"
)

// What the lab's router sees, from BIRD and from its kernel.

// Routes returns BIRD's routes for the VIPs (all of them, not only the
// best), each from the node named by its Protocol.
func (l *Lab) Routes() ([]birdlab.Route, error) {
	rs, err := l.Bird.Routes()
	if err != nil {
		return nil, err
	}
	var out []birdlab.Route
	for _, r := range rs {
		if a := r.Prefix.Addr(); a == VIP4 || a == VIP6 {
			out = append(out, r)
		}
	}
	return out, nil
}

// NodeRoutes returns, per node name, the VIP routes BIRD has from it.
func (l *Lab) NodeRoutes() (map[string][]birdlab.Route, error) {
	rs, err := l.Routes()
	if err != nil {
		return nil, err
	}
	out := map[string][]birdlab.Route{}
	for _, r := range rs {
		out[r.Protocol] = append(out[r.Protocol], r)
	}
	return out, nil
}

// WaitRoutes waits until BIRD has both VIPs, without the graceful shutdown
// community, from every node.
func (l *Lab) WaitRoutes(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last map[string][]birdlab.Route
	var err error
	for {
		if last, err = l.NodeRoutes(); err == nil && l.allPlain(last) {
			l.opts.Logf("lab: BIRD has both VIPs from every node")
			return nil
		}
		for _, n := range l.Nodes {
			if n.exited() {
				return fmt.Errorf("anyfront on %s exited: %v\n%s", n.Name, n.proc.Err(), n.LogTail(20))
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lab: routes not all at the router within %s: %v (%v)", timeout, last, err)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

func (l *Lab) allPlain(byNode map[string][]birdlab.Route) bool {
	for _, n := range l.Nodes {
		rs := byNode[n.Name]
		if len(rs) != 2 {
			return false
		}
		for _, r := range rs {
			if r.HasCommunity("65535:0") {
				return false
			}
		}
	}
	return true
}

// KernelRoute returns the router's kernel route for a VIP
// (`ip route show` / `ip -6 route show`), where ECMP shows as one nexthop
// line per node.
func (l *Lab) KernelRoute(vip netip.Addr) (string, error) {
	args := []string{"route", "show", vip.String()}
	if vip.Is6() {
		args = append([]string{"-6"}, args...)
	}
	out, err := l.Router.IP(args...)
	return strings.TrimSpace(out), err
}
