package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/anyfront/anyfront/config"
)

// Session timers GoBGP would otherwise default to values made for core
// routers: a 120 s connect retry and 30 s idle hold after a reset mean a
// restarted route server is not peered again for minutes, during which the
// anycast node is invisible. A few seconds is cheap for a handful of peers.
const (
	connectRetry = 5 * time.Second
	idleHold     = 5 * time.Second
)

// passwordLimit bounds a TCP-MD5 password file: Linux caps the key at 80
// bytes (TCP_MD5SIG_MAXKEYLEN), so anything larger is the wrong file.
const passwordLimit = 80

// peerSpec is one neighbour as the speaker configures it: the config plus
// the password read from its file. Comparable, so reloads diff with ==.
type peerSpec struct {
	Address     netip.Addr
	ASN         uint32
	HoldTime    time.Duration
	Port        int
	Multihop    int
	TTLSecurity bool
	password    string // never logged, never in Status
}

// globalSpec is what StartBgp takes; changing it restarts the speaker.
type globalSpec struct {
	ASN        uint32
	RouterID   netip.Addr
	ListenPort int
}

func globalOf(cfg *config.BGP) globalSpec {
	return globalSpec{ASN: cfg.ASN, RouterID: cfg.RouterID, ListenPort: cfg.ListenPort}
}

// peerSpecs reads each peer's password file. It runs in New and Reload, so
// an unreadable file rejects the config instead of failing later in Run.
func peerSpecs(cfg *config.BGP) ([]peerSpec, error) {
	out := make([]peerSpec, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		s := peerSpec{Address: p.Address, ASN: p.ASN, HoldTime: p.HoldTime, Port: p.Port,
			Multihop: p.Multihop, TTLSecurity: p.TTLSecurity}
		if p.PasswordFile != "" {
			b, err := os.ReadFile(p.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("peer %s: password_file: %w", p.Address, err)
			}
			s.password = strings.TrimRight(string(b), "\r\n")
			if s.password == "" || len(s.password) > passwordLimit {
				return nil, fmt.Errorf("peer %s: password_file %s: want 1 to %d bytes on one line", p.Address, p.PasswordFile, passwordLimit)
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func seconds(d time.Duration) uint64 { return uint64((d + time.Second - 1) / time.Second) }

// apiPeer is the GoBGP neighbour for s. Both unicast families are enabled
// explicitly: GoBGP otherwise enables only the family of the neighbour's
// address, and the IPv6 VIP would never be sent over an IPv4 session.
func (s peerSpec) apiPeer() *api.Peer {
	hold := seconds(s.HoldTime)
	p := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: s.Address.String(), PeerAsn: s.ASN, AuthPassword: s.password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               hold,
			KeepaliveInterval:      max(hold/3, 1),
			ConnectRetry:           seconds(connectRetry),
			IdleHoldTimeAfterReset: seconds(idleHold),
		}},
		Transport: &api.Transport{RemotePort: uint32(s.Port)},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
		},
	}
	if s.Multihop > 0 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(s.Multihop)}
	}
	if s.TTLSecurity {
		// GTSM (RFC 5082): we send with TTL 255, so a packet from a peer
		// Multihop routers away arrives with at least 256-Multihop.
		p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: uint32(256 - max(s.Multihop, 1))}
	}
	return p
}

// sessionState names GoBGP's session states the way operators read them.
func sessionState(s api.PeerState_SessionState) string {
	switch s {
	case api.PeerState_IDLE:
		return "idle"
	case api.PeerState_CONNECT:
		return "connect"
	case api.PeerState_ACTIVE:
		return "active"
	case api.PeerState_OPENSENT:
		return "opensent"
	case api.PeerState_OPENCONFIRM:
		return "openconfirm"
	case api.PeerState_ESTABLISHED:
		return "established"
	}
	return "unknown"
}
