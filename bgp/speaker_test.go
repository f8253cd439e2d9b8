package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/anyfront/anyfront/internal/testlab"
)

// route is a received path, decoded for assertions.
type route struct {
	Prefix      netip.Prefix
	NextHop     netip.Addr
	ASPath      []uint32
	MED         uint32
	Communities []string // standard and large, as written in config
}

func (r route) String() string {
	return fmt.Sprintf("%s via %s as-path %v med %d communities %v", r.Prefix, r.NextHop, r.ASPath, r.MED, r.Communities)
}

func decodeRoute(t testing.TB, p *api.Path) route {
	t.Helper()
	nlri, err := apiutil.GetNativeNlri(p)
	if err != nil {
		t.Fatal(err)
	}
	r := route{Prefix: netip.MustParsePrefix(nlri.String())}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range attrs {
		switch a := a.(type) {
		case *gobgp.PathAttributeNextHop:
			r.NextHop = netip.MustParseAddr(a.Value.String())
		case *gobgp.PathAttributeMpReachNLRI:
			r.NextHop = netip.MustParseAddr(a.Nexthop.String())
		case *gobgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				r.ASPath = append(r.ASPath, seg.GetAS()...)
			}
		case *gobgp.PathAttributeMultiExitDisc:
			r.MED = a.Value
		case *gobgp.PathAttributeCommunities:
			for _, c := range a.Value {
				r.Communities = append(r.Communities, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
			}
		case *gobgp.PathAttributeLargeCommunities:
			for _, c := range a.Values {
				r.Communities = append(r.Communities, c.String())
			}
		}
	}
	return r
}

// receiver is a plain GoBGP server standing in for a router: it listens on
// 127.0.0.1 and accepts the speaker under test as a passive neighbour.
type receiver struct {
	srv  *server.BgpServer
	port int
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(testLogger(t))
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "198.51.100.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"},
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.StopBgp(context.Background(), &api.StopBgpRequest{}) })
	peer := peerSpec{Address: netip.MustParseAddr("127.0.0.1"), ASN: 65001, HoldTime: 9 * time.Second}.apiPeer()
	peer.Transport = &api.Transport{PassiveMode: true} // never dial out of loopback
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
		t.Fatal(err)
	}
	return &receiver{srv: srv, port: port}
}

// recordWithdrawals counts the withdrawals the receiver gets, per prefix,
// until the test ends. The watcher is cancelled before the receiver stops
// (cleanups run last-in first-out): GoBGP v3 leaks a watcher alive at StopBgp.
func (r *receiver) recordWithdrawals(t *testing.T) func(netip.Prefix) int {
	var mu sync.Mutex
	n := map[netip.Prefix]int{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	err := r.srv.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_ADJIN}},
	}}, func(ev *api.WatchEventResponse) {
		for _, p := range ev.GetTable().GetPaths() {
			if p.IsWithdraw {
				rt := decodeRoute(t, p)
				mu.Lock()
				n[rt.Prefix]++
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return func(p netip.Prefix) int {
		mu.Lock()
		defer mu.Unlock()
		return n[p]
	}
}

// routes lists what the receiver has from the speaker (its Adj-RIB-In).
func (r *receiver) routes(t testing.TB) map[netip.Prefix]route {
	t.Helper()
	out := map[netip.Prefix]route{}
	for _, fam := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		err := r.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_ADJ_IN, Name: "127.0.0.1", Family: family(fam)},
			func(d *api.Destination) {
				for _, p := range d.Paths {
					rt := decodeRoute(t, p)
					out[rt.Prefix] = rt
				}
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func (r *receiver) established() bool {
	up := false
	r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		up = p.GetState().GetSessionState() == api.PeerState_ESTABLISHED
	})
	return up
}

// waitRoutes waits until the receiver holds exactly want (by String).
func (r *receiver) waitRoutes(t *testing.T, want ...route) {
	t.Helper()
	eventually(t, waitTimeout, func() string {
		got := r.routes(t)
		var diffs []string
		for _, w := range want {
			if g, ok := got[w.Prefix]; !ok || g.String() != w.String() {
				diffs = append(diffs, fmt.Sprintf("want %s, got %s", w, g))
			}
			delete(got, w.Prefix)
		}
		for _, g := range got {
			diffs = append(diffs, "unexpected "+g.String())
		}
		return strings.Join(diffs, "; ")
	})
}

// TestSpeakerAgainstGoBGP runs our speaker and a receiving GoBGP in one
// process over loopback and checks what arrives.
func TestSpeakerAgainstGoBGP(t *testing.T) {
	rcv := newReceiver(t)
	ctx := context.Background()
	log := testLogger(t)
	sp, err := startSpeaker(ctx, newServer(log), log, globalSpec{ASN: 65001, RouterID: netip.MustParseAddr("198.51.100.2")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close(context.Background()) })
	if err := sp.SetPeers(ctx, []peerSpec{{Address: netip.MustParseAddr("127.0.0.1"), ASN: 65000, HoldTime: 9 * time.Second, Port: rcv.port}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitTimeout, func() string {
		if !rcv.established() {
			return "session not established"
		}
		return ""
	})

	p4 := Path{Prefix: netip.MustParsePrefix(v4), Communities: []string{"65001:53", "65001:1:2"}, MED: 10, Prepend: 2}
	p6 := Path{Prefix: netip.MustParsePrefix(v6), NextHop: netip.MustParseAddr("2001:db8:100::2")}
	withdrawals := rcv.recordWithdrawals(t)
	r4 := route{Prefix: p4.Prefix, NextHop: netip.MustParseAddr("127.0.0.1"), ASPath: []uint32{65001, 65001, 65001}, MED: 10, Communities: []string{"65001:53", "65001:1:2"}}
	r6 := route{Prefix: p6.Prefix, NextHop: p6.NextHop, ASPath: []uint32{65001}}

	t.Run("both families arrive with their attributes and next hops", func(t *testing.T) {
		if err := sp.Set(p4, p6); err != nil {
			t.Fatal(err)
		}
		rcv.waitRoutes(t, r4, r6)
	})
	t.Run("setting the same paths again changes nothing", func(t *testing.T) {
		before := sp.paths[p4.Prefix].api
		if err := sp.Set(p6, p4); err != nil {
			t.Fatal(err)
		}
		if sp.paths[p4.Prefix].api != before {
			t.Error("an unchanged path was re-added")
		}
	})
	t.Run("re-announcing with 65535:0 replaces the route in place", func(t *testing.T) {
		drained := p4.withCommunity(GracefulShutdown)
		if err := sp.Set(drained, p6); err != nil {
			t.Fatal(err)
		}
		r := r4
		r.Communities = []string{"65001:53", GracefulShutdown, "65001:1:2"} // standard, then large
		rcv.waitRoutes(t, r, r6)
		if n := withdrawals(p4.Prefix); n != 0 {
			t.Errorf("the receiver saw %d withdrawals of %s during the re-announce", n, p4.Prefix)
		}
	})
	t.Run("a withdraw removes exactly our path and leaves other local routes", func(t *testing.T) {
		// A route originated on the same server by someone else: GoBGP's
		// DeletePath without a path would take it too.
		other, err := Path{Prefix: netip.MustParsePrefix("192.0.2.99/32")}.apiPath(65001)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sp.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: other}); err != nil {
			t.Fatal(err)
		}
		rOther := route{Prefix: netip.MustParsePrefix("192.0.2.99/32"), NextHop: netip.MustParseAddr("127.0.0.1"), ASPath: []uint32{65001}}
		if err := sp.Set(p6); err != nil {
			t.Fatal(err)
		}
		rcv.waitRoutes(t, r6, rOther)
		if err := sp.Set(); err != nil {
			t.Fatal(err)
		}
		rcv.waitRoutes(t, rOther)
		if n := withdrawals(p4.Prefix); n != 1 {
			t.Errorf("the receiver saw %d withdrawals of %s, want 1", n, p4.Prefix)
		}
	})
	t.Run("an IPv6 path without a global next hop is refused", func(t *testing.T) {
		err := sp.Set(Path{Prefix: p6.Prefix})
		if err == nil || !strings.Contains(err.Error(), "global IPv6 next hop") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("DeletePath without a path is refused", func(t *testing.T) {
		if err := sp.deletePath(ctx, nil); err == nil {
			t.Error("deletePath(nil) succeeded")
		}
	})
}

func TestPeerConfigReachesGoBGP(t *testing.T) {
	spec := peerSpec{Address: netip.MustParseAddr("198.51.100.1"), ASN: 65000, HoldTime: 9 * time.Second, Port: 1179,
		Multihop: 2, TTLSecurity: true, password: "s3cret"}
	p := spec.apiPeer()
	var fams []string
	for _, a := range p.AfiSafis {
		fams = append(fams, a.Config.Family.Afi.String()+"/"+a.Config.Family.Safi.String())
	}
	switch {
	case p.Timers.Config.HoldTime != 9 || p.Timers.Config.KeepaliveInterval != 3:
		t.Errorf("timers %v", p.Timers.Config)
	case p.Transport.RemotePort != 1179 || p.EbgpMultihop.MultihopTtl != 2 || p.TtlSecurity.TtlMin != 254:
		t.Errorf("transport %v multihop %v ttl %v", p.Transport, p.EbgpMultihop, p.TtlSecurity)
	case p.Conf.AuthPassword != "s3cret":
		t.Error("password not passed")
	case !slices.Equal(fams, []string{"AFI_IP/SAFI_UNICAST", "AFI_IP6/SAFI_UNICAST"}):
		t.Errorf("families %v", fams)
	}
}
