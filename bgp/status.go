package bgp

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/anyfront/anyfront/bgp/bgpstatus"
	"github.com/anyfront/anyfront/config"
)

// Status, PeerStatus and PrefixStatus are the body of GET /api/v1/bgp
// (bgpstatus, a leaf, so the admin API types them without linking GoBGP).
type (
	Status       = bgpstatus.Status
	PeerStatus   = bgpstatus.Peer
	PrefixStatus = bgpstatus.Prefix
)

// prefixView is what the run loop publishes about one prefix.
type prefixView struct {
	Prefix netip.Prefix
	InRIB  bool
	Path   Path
	Reason string
	Since  time.Time
}

// viewStore holds the run loop's last published views for Status and the
// metrics, which run on other goroutines.
type viewStore struct {
	mu       sync.Mutex
	running  bool
	asn      uint32
	routerID netip.Addr
	prefixes []prefixView
}

func (v *viewStore) publish(cfg *config.BGP, views []prefixView) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.running, v.asn, v.routerID, v.prefixes = true, cfg.ASN, cfg.RouterID, views
}

// stopped publishes cfg's prefixes as not announced, for reason.
func (v *viewStore) stopped(cfg *config.BGP, reason string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	since := map[netip.Prefix]time.Time{}
	for _, pv := range v.prefixes {
		since[pv.Prefix] = pv.Since
	}
	views := make([]prefixView, 0, len(cfg.Announce))
	for _, a := range cfg.Announce {
		views = append(views, prefixView{Prefix: a.Prefix, Path: announcePath(a), Reason: reason, Since: since[a.Prefix]})
	}
	v.running, v.asn, v.routerID, v.prefixes = false, cfg.ASN, cfg.RouterID, views
}

func (v *viewStore) get() (running bool, asn uint32, routerID netip.Addr, views []prefixView) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.running, v.asn, v.routerID, slices.Clone(v.prefixes)
}

// Status is what GET /api/v1/bgp serves.
func (c *Controller) Status() Status { return c.status() }

func (c *Controller) status() Status {
	now := time.Now()
	running, asn, routerID, views := c.views.get()
	st := Status{Enabled: true, Running: running, ASN: asn, RouterID: routerID.String(), Peers: []PeerStatus{}, Prefixes: []PrefixStatus{}}
	up := 0
	for _, p := range c.peerList() {
		ps := PeerStatus{Address: p.Address.String(), ASN: p.ASN, State: p.State, Uptime: "0s", Since: p.Since}
		if p.State == "established" {
			up++
			d := now.Sub(p.Since).Round(time.Second)
			ps.Uptime, ps.UptimeSeconds = d.String(), int64(d/time.Second)
		}
		st.Peers = append(st.Peers, ps)
	}
	for _, v := range views {
		ps := PrefixStatus{Prefix: v.Prefix.String(), Announced: v.InRIB && up > 0, Reason: v.Reason,
			Communities: append([]string{}, v.Path.Communities...), MED: v.Path.MED, Prepend: v.Path.Prepend, Since: v.Since}
		if v.Path.NextHop.IsValid() {
			ps.NextHop = v.Path.NextHop.String()
		}
		if v.InRIB && up == 0 {
			ps.Reason = "no established BGP session (ready to announce: " + v.Reason + ")"
		}
		st.Prefixes = append(st.Prefixes, ps)
	}
	return st
}

// peerStatus is one configured neighbour's last known session state.
type peerStatus struct {
	Address netip.Addr
	ASN     uint32
	State   string
	Since   time.Time
}

// resetPeers makes the tracked peers equal to peers, keeping the state of
// the ones that stay.
func (c *Controller) resetPeers(peers []peerSpec) {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	keep := map[netip.Addr]bool{}
	for _, p := range peers {
		keep[p.Address] = true
		if ps, ok := c.peerSt[p.Address]; ok {
			ps.ASN = p.ASN
			continue
		}
		c.peerSt[p.Address] = &peerStatus{Address: p.Address, ASN: p.ASN, State: "idle", Since: time.Now()}
	}
	for addr := range c.peerSt {
		if !keep[addr] {
			delete(c.peerSt, addr)
			c.metrics.forgetPeer(addr)
		}
	}
}

// resetPeerStates marks every session down: BGP stopped.
func (c *Controller) resetPeerStates() {
	c.peerMu.Lock()
	addrs := make([]netip.Addr, 0, len(c.peerSt))
	for addr := range c.peerSt {
		addrs = append(addrs, addr)
	}
	c.peerMu.Unlock()
	for _, addr := range addrs {
		c.setPeerState(peerEvent{Address: addr, State: "idle"}, true)
	}
}

// onPeerEvent runs on GoBGP's watcher goroutine.
func (c *Controller) onPeerEvent(ev peerEvent) {
	if c.setPeerState(ev, false) {
		if l := c.currentLoop(); l != nil {
			l.poke() // a drain may end early with no session up
		}
	}
}

// setPeerState records ev and reports whether the session went up or down.
// stopping: BGP is being stopped on purpose, so a session going down is no
// warning.
func (c *Controller) setPeerState(ev peerEvent, stopping bool) bool {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	ps, ok := c.peerSt[ev.Address]
	if !ok || ps.State == ev.State {
		return false
	}
	wasUp, isUp := ps.State == "established", ev.State == "established"
	ps.State, ps.Since = ev.State, time.Now()
	if wasUp == isUp {
		return false
	}
	c.metrics.peerTransition(ev.Address)
	switch {
	case isUp:
		c.log.Info("bgp session established", "peer", ev.Address, "asn", ps.ASN)
	case stopping:
		c.log.Info("bgp session closed", "peer", ev.Address, "asn", ps.ASN)
	default:
		c.log.Warn("bgp session down", "peer", ev.Address, "asn", ps.ASN, "state", ev.State)
	}
	return true
}

func (c *Controller) peerList() []peerStatus {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	out := make([]peerStatus, 0, len(c.peerSt))
	for _, ps := range c.peerSt {
		out = append(out, *ps)
	}
	slices.SortFunc(out, func(a, b peerStatus) int { return a.Address.Compare(b.Address) })
	return out
}

func (c *Controller) peersUp() int {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	n := 0
	for _, ps := range c.peerSt {
		if ps.State == "established" {
			n++
		}
	}
	return n
}
