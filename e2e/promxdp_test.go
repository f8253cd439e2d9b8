package e2e

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// promXDPNode is an anyfront with XDP attached in generic mode on the XDP
// lab's veth, for TestPrometheus: its admin API listens only inside the
// server namespace, so a forwarder on this namespace's loopback lets
// Prometheus scrape it.
type promXDPNode struct {
	*xdpNode
	// target is the forwarder's host:port, Prometheus's scrape target.
	target string
	// tokenFile holds the node's admin token (it has no read token: the
	// XDP node's config is TestXDPDaemon's).
	tokenFile string
	// client and blocked are sockets in the client namespace: an
	// ordinary source (verdict pass) and the blocklisted one (blocked).
	client, blocked net.PacketConn
	query           []byte
}

// promXDPSkip says why TestPrometheus cannot attach XDP here, or "".
func promXDPSkip() string {
	// (-short never gets here: TestMain skips the package.)
	if os.Geteuid() != 0 {
		return "needs root (XDP in generic mode on a veth in a network namespace); run as root, e.g. sudo make test"
	}
	return ""
}

// startPromXDPNode starts the XDP node (see startXDPNode), its scrape
// forwarder and its two client sockets.
func startPromXDPNode(t *testing.T) *promXDPNode {
	t.Helper()
	n := startXDPNode(t, "generic")
	p := &promXDPNode{xdpNode: n, tokenFile: filepath.Join(t.TempDir(), "admin.token")}
	if err := os.WriteFile(p.tokenFile, []byte("xdp-e2e-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.target = forwardIntoNetns(t, n.lab.Netns(n.lab.Server), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), xdpAdminPort))
	// Netns.Do, not XDPLab.Do: the latter ends its thread, which may be
	// the one that started Prometheus or a node (Pdeathsig would kill it).
	client := n.lab.Netns(n.lab.Client)
	for _, s := range []struct {
		src  netip.Addr
		conn *net.PacketConn
	}{{xdpClient4, &p.client}, {xdpBlocked4, &p.blocked}} {
		err := client.Do(func() (err error) {
			*s.conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.src, 0)))
			return err
		})
		if err != nil {
			t.Fatalf("client socket on %v: %v", s.src, err)
		}
		t.Cleanup(func() { (*s.conn).Close() })
	}
	q, err := new(dns.Msg).SetQuestion("www."+testlab.DemoZone, dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	p.query = q
	return p
}

// send sends one query to the VIP from the ordinary client and one from the
// blocklisted one, and reads whatever answers have come back (the client
// socket's buffer stays empty; the answers themselves are TestXDPDaemon's).
func (p *promXDPNode) send() {
	vip := net.UDPAddrFromAddrPort(netip.AddrPortFrom(p.lab.VIP4, 53))
	_, _ = p.client.WriteTo(p.query, vip)
	_, _ = p.blocked.WriteTo(p.query, vip)
	buf := make([]byte, 512)
	_ = p.client.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
	for {
		if _, _, err := p.client.ReadFrom(buf); err != nil {
			return
		}
	}
}

// forwardIntoNetns relays TCP connections from a fresh port on this
// namespace's loopback to addr inside ns, and returns that port's
// host:port. At most 8 connections are relayed at once (Prometheus keeps
// one); all are closed when the test ends.
func forwardIntoNetns(t *testing.T, ns *testlab.Netns, addr netip.AddrPort) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		open   = map[net.Conn]struct{}{}
		closed bool
		slots  = make(chan struct{}, 8)
	)
	// track adds c to the open connections, closed at cleanup; after it, it
	// closes c instead and says so.
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		open[c] = struct{}{}
		return true
	}
	untrack := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		delete(open, c)
	}
	relay := func(down net.Conn) {
		defer wg.Done()
		defer func() { <-slots }()
		defer down.Close()
		if !track(down) {
			return
		}
		defer untrack(down)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		up, err := ns.DialContext(ctx, "tcp", addr.String())
		cancel()
		if err != nil || !track(up) {
			return
		}
		defer up.Close()
		defer untrack(up)
		done := make(chan struct{})
		go func() { _, _ = io.Copy(up, down); up.Close(); close(done) }()
		_, _ = io.Copy(down, up)
		down.Close()
		<-done
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed at cleanup
			}
			select {
			case slots <- struct{}{}:
				wg.Add(1)
				go relay(c)
			default:
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		closed = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}
