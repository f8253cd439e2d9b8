package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/config/oc"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// ErrBusy is returned by Run when another Controller already runs BGP in
// this process: there is one GoBGP server per process.
var ErrBusy = errors.New("bgp: another controller is running in this process")

// Announcer makes the set of announced paths equal to paths. It is
// idempotent and desired-state (MetalLB's Session.Set): calling it again
// with the same paths sends nothing, a changed attribute re-announces only
// that prefix, and a prefix left out is withdrawn with the exact path that
// announced it.
type Announcer interface {
	Set(paths ...Path) error
}

// session is what the controller needs from a BGP speaker: the Announcer,
// peers, and peer state changes. The GoBGP speaker implements it; tests use
// a fake.
type session interface {
	Announcer
	// SetPeers makes the configured neighbours equal to peers, touching
	// only the ones that changed.
	SetPeers(ctx context.Context, peers []peerSpec) error
	// WatchPeers calls fn on every session state change until ctx ends.
	WatchPeers(ctx context.Context, fn func(peerEvent)) error
	// Close withdraws everything and stops BGP. Watchers must be
	// cancelled first (GoBGP v3 leaks a watcher alive at StopBgp).
	Close(ctx context.Context) error
}

// peerEvent is one session state change.
type peerEvent struct {
	Address netip.Addr
	State   string // idle, connect, active, opensent, openconfirm, established
}

// processBusy guards the process server against two concurrent Runs:
// StartBgp on a running server replaces its RIB under the first one.
var processBusy atomic.Bool

// startProcessSpeaker starts BGP on the process's GoBGP server.
func startProcessSpeaker(ctx context.Context, log *slog.Logger, g globalSpec) (session, error) {
	if !processBusy.CompareAndSwap(false, true) {
		return nil, ErrBusy
	}
	sp, err := startSpeaker(ctx, processServer(log), log, g)
	if err != nil {
		processBusy.Store(false)
		return nil, err
	}
	sp.release = func() { processBusy.Store(false) }
	return sp, nil
}

// speaker is the GoBGP implementation of session.
type speaker struct {
	srv     *server.BgpServer
	log     *slog.Logger
	asn     uint32
	release func() // called once by Close; may be nil

	mu    sync.Mutex
	peers map[netip.Addr]peerSpec
	paths map[netip.Prefix]announcedPath
}

// announcedPath keeps the GoBGP path that was added, to delete exactly it.
type announcedPath struct {
	path Path
	api  *api.Path
}

// startSpeaker starts BGP on srv with the global settings g.
func startSpeaker(ctx context.Context, srv *server.BgpServer, log *slog.Logger, g globalSpec) (*speaker, error) {
	port := int32(g.ListenPort)
	if port == 0 {
		port = -1 // GoBGP listens on 179 when given 0; -1 means do not listen
	}
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        g.ASN,
		RouterId:   g.RouterID.String(),
		ListenPort: port,
		Families: []uint32{
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV4_UNICAST]),
			uint32(oc.AfiSafiTypeToIntMap[oc.AFI_SAFI_TYPE_IPV6_UNICAST]),
		},
	}})
	if err != nil {
		return nil, fmt.Errorf("start bgp (asn %d, router id %s, listen port %d): %w", g.ASN, g.RouterID, g.ListenPort, err)
	}
	return &speaker{srv: srv, log: log, asn: g.ASN,
		peers: map[netip.Addr]peerSpec{}, paths: map[netip.Prefix]announcedPath{}}, nil
}

// SetPeers deletes removed peers, re-creates changed ones (a changed hold
// time or password needs a new session anyway) and adds new ones.
func (s *speaker) SetPeers(ctx context.Context, peers []peerSpec) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	want := make(map[netip.Addr]peerSpec, len(peers))
	for _, p := range peers {
		want[p.Address] = p
	}
	var errs []error
	for _, addr := range sortedKeys(s.peers, netip.Addr.Compare) {
		if w, ok := want[addr]; ok && w == s.peers[addr] {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete peer %s: %w", addr, err))
			continue
		}
		delete(s.peers, addr)
		s.log.Info("bgp peer removed", "peer", addr)
	}
	for _, addr := range sortedKeys(want, netip.Addr.Compare) {
		if _, ok := s.peers[addr]; ok {
			continue // unchanged, or its delete failed above
		}
		p := want[addr]
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: p.apiPeer()}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s: %w", addr, err))
			continue
		}
		s.peers[addr] = p
		s.log.Info("bgp peer configured", "peer", addr, "asn", p.ASN)
	}
	return errors.Join(errs...)
}

// Set implements Announcer on GoBGP. Withdrawals go first so that a
// failure part way leaves less announced, never more.
func (s *speaker) Set(paths ...Path) error {
	ctx := context.Background() // GoBGP's calls do not honour a context
	want := make(map[netip.Prefix]Path, len(paths))
	for _, p := range paths {
		if _, dup := want[p.Prefix]; dup {
			return fmt.Errorf("set: prefix %s given twice", p.Prefix)
		}
		want[p.Prefix] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, prefix := range sortedKeys(s.paths, netip.Prefix.Compare) {
		if _, keep := want[prefix]; keep {
			continue
		}
		if err := s.deletePath(ctx, s.paths[prefix].api); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", prefix, err))
			continue
		}
		delete(s.paths, prefix)
	}
	for _, prefix := range sortedKeys(want, netip.Prefix.Compare) {
		p := want[prefix]
		if old, ok := s.paths[prefix]; ok && old.path.Equal(p) {
			continue
		}
		ap, err := p.apiPath(s.asn)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// Adding a path for a prefix we already announce replaces it
		// (an implicit withdraw): the route changes attributes without
		// ever leaving the peer's table.
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: ap}); err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		s.paths[prefix] = announcedPath{path: p, api: ap}
	}
	return errors.Join(errs...)
}

// deletePath withdraws one path we added. It refuses a nil path because
// GoBGP's DeletePath without one deletes every locally originated route.
func (s *speaker) deletePath(ctx context.Context, ap *api.Path) error {
	if ap == nil {
		return errors.New("refusing DeletePath without a path (it would delete every local route)")
	}
	return s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: ap.Family, Path: ap})
}

// WatchPeers forwards GoBGP's peer state events. GoBGP runs fn on its own
// goroutine, which ends once ctx is cancelled.
func (s *speaker) WatchPeers(ctx context.Context, fn func(peerEvent)) error {
	return s.srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		pe := r.GetPeer()
		if pe == nil || pe.Type != api.WatchEventResponse_PeerEvent_STATE || pe.Peer.GetState() == nil {
			return
		}
		addr, err := netip.ParseAddr(pe.Peer.State.NeighborAddress)
		if err != nil {
			return
		}
		fn(peerEvent{Address: addr.Unmap(), State: sessionState(pe.Peer.State.SessionState)})
	})
}

// Close withdraws every path, then stops BGP (closing the sessions with a
// CEASE notification). The GoBGP server itself keeps serving.
func (s *speaker) Close(ctx context.Context) error {
	err := s.Set()
	if stopErr := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); stopErr != nil {
		err = errors.Join(err, fmt.Errorf("stop bgp: %w", stopErr))
	}
	s.mu.Lock()
	s.peers = map[netip.Addr]peerSpec{}
	release := s.release
	s.release = nil
	s.mu.Unlock()
	if release != nil {
		release()
	}
	return err
}

func sortedKeys[K comparable, V any](m map[K]V, compare func(a, b K) int) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compare)
	return keys
}
