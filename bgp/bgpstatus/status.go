// Package bgpstatus holds the values the BGP speaker reports (GET
// /api/v1/bgp), apart from the speaker, so the admin API and anyfrontctl
// can use them without linking GoBGP. It holds types only.
package bgpstatus

import "time"

// Status is the body of GET /api/v1/bgp.
type Status struct {
	// Enabled is always true: the admin API answers {"enabled": false}
	// itself when the config has no bgp section.
	Enabled bool `json:"enabled"`
	// Running is true while Run has BGP up.
	Running  bool     `json:"running"`
	ASN      uint32   `json:"asn"`
	RouterID string   `json:"router_id"`
	Peers    []Peer   `json:"peers"`
	Prefixes []Prefix `json:"prefixes"`
}

// Peer is one neighbour's session.
type Peer struct {
	Address string `json:"address"`
	ASN     uint32 `json:"asn"`
	// State is idle, connect, active, opensent, openconfirm or established.
	State string `json:"state"`
	// Uptime is how long the session has been established ("0s" when
	// it is not), rounded to the second; UptimeSeconds is the same.
	Uptime        string `json:"uptime"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	// Since is when State last changed.
	Since time.Time `json:"since,omitzero"`
}

// Prefix is one announcement: whether routers are hearing it, why,
// and the attributes it carries (or would carry).
type Prefix struct {
	Prefix string `json:"prefix"`
	// Announced is true when the speaker holds the route and at least
	// one session is established to hear it.
	Announced bool `json:"announced"`
	// Reason says why: pool healthy or below minimum (with counts),
	// waiting for the first health check, node not serving, draining,
	// drained, shutting down, no established session.
	Reason string `json:"reason"`
	// NextHop is empty when the session's local address is used.
	NextHop     string   `json:"next_hop,omitempty"`
	Communities []string `json:"communities"`
	MED         uint32   `json:"med"`
	Prepend     int      `json:"prepend"`
	// Since is when the route was last announced, changed or withdrawn
	// (zero if never since start).
	Since time.Time `json:"since,omitzero"`
}
