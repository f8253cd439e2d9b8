package faultlab

import (
	"container/list"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Bounds of a relay: every table and queue has one.
const (
	// relayMaxFlows is how many client addresses a relay keeps an upstream
	// UDP socket for; the least recently used one is closed to make room.
	relayMaxFlows = 4096
	// relayMaxPending is how many delayed UDP answers may wait at once;
	// beyond it an answer is dropped (and counted).
	relayMaxPending = 65536
	// relayMaxConns bounds the TCP connections relayed at once; one more
	// is closed at accept.
	relayMaxConns = 1024
	// relayChunks is how many delayed TCP chunks a connection may hold.
	relayChunks = 64
	// relayDialTimeout bounds connecting to the backend over TCP.
	relayDialTimeout = 2 * time.Second
	// relayStartAttempts: a free port can be taken by someone else
	// before the relay binds it; retry with another.
	relayStartAttempts = 3
)

// RelayOptions configures a relay.
type RelayOptions struct {
	// Backend is where queries are forwarded (usually a lab unbound).
	Backend netip.AddrPort
	// Delay holds every answer this long before it goes to the client.
	Delay time.Duration
	// DropPercent is the share of queries (UDP) or connections (TCP)
	// dropped, 0 to 100; 100 is a dead backend (a black hole).
	DropPercent int
}

// Relay is a slow or flapping backend without netem: a UDP and TCP
// forwarder on one loopback port in front of a real backend. Queries are
// dropped on the way in (the backend never sees them); answers are delayed
// on the way back. Its methods are safe for concurrent use.
//
// Over UDP every client address gets an upstream socket of its own (at most
// relayMaxFlows, least recently used evicted), so answers find their way
// back. Over TCP a connection is either dropped whole at accept (accepted,
// read and never answered: a black hole) or forwarded, with each chunk of
// the backend's answer stream delayed by Delay.
type Relay struct {
	udp     *net.UDPConn
	tcp     *net.TCPListener
	backend netip.AddrPort

	delay atomic.Int64 // nanoseconds
	drop  atomic.Int32 // percent

	forwarded, dropped atomic.Uint64
	pending            atomic.Int64 // delayed UDP answers waiting

	mu     sync.Mutex
	flows  map[netip.AddrPort]*list.Element // of *relayFlow
	lru    *list.List                       // front: most recently used
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// relayFlow is one UDP client's upstream socket.
type relayFlow struct {
	client netip.AddrPort
	up     *net.UDPConn
}

// StartRelay starts a relay on a free 127.0.0.1 port, UDP and TCP, and
// closes it when the test ends.
func StartRelay(t testing.TB, o RelayOptions) *Relay {
	t.Helper()
	r, err := NewRelay(o)
	if err != nil {
		t.Fatalf("start relay: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// NewRelay starts a relay on a free 127.0.0.1 port. The caller must Close
// it.
func NewRelay(o RelayOptions) (*Relay, error) {
	if !o.Backend.IsValid() {
		return nil, errors.New("relay: no backend address")
	}
	r := &Relay{backend: o.Backend, flows: map[netip.AddrPort]*list.Element{}, lru: list.New(), conns: map[net.Conn]struct{}{}}
	r.Set(o.Delay, o.DropPercent)
	var err error
	for range relayStartAttempts {
		var port int
		if port, err = testlab.FreePort(); err != nil {
			return nil, err
		}
		addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(port))
		if r.udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(addr)); err != nil {
			continue
		}
		if r.tcp, err = net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(addr)); err != nil {
			r.udp.Close()
			continue
		}
		r.wg.Add(2)
		go r.serveUDP()
		go r.serveTCP()
		return r, nil
	}
	return nil, err
}

// Addr is where the relay listens, UDP and TCP.
func (r *Relay) Addr() netip.AddrPort { return r.udp.LocalAddr().(*net.UDPAddr).AddrPort() }

// Set changes the delay and the drop share at once; queries and answers
// already on their way keep what they had.
func (r *Relay) Set(delay time.Duration, dropPercent int) {
	r.delay.Store(int64(max(delay, 0)))
	r.drop.Store(int32(min(max(dropPercent, 0), 100)))
}

// Stats returns the UDP queries and TCP connections forwarded, and those
// dropped (by DropPercent, or a UDP answer for a full delay queue).
func (r *Relay) Stats() (forwarded, dropped uint64) {
	return r.forwarded.Load(), r.dropped.Load()
}

// dropNow draws whether to drop the next query or connection.
func (r *Relay) dropNow() bool {
	p := r.drop.Load()
	return p >= 100 || (p > 0 && rand.IntN(100) < int(p))
}

func (r *Relay) serveUDP() {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, client, err := r.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if r.dropNow() {
			r.dropped.Add(1)
			continue
		}
		f := r.flow(client)
		if f == nil {
			return // closed
		}
		if _, err := f.up.Write(buf[:n]); err == nil {
			r.forwarded.Add(1)
		}
	}
}

// flow returns the client's upstream socket, opening one (and evicting the
// least recently used beyond relayMaxFlows) when it has none; nil once the
// relay is closed or no socket can be opened.
func (r *Relay) flow(client netip.AddrPort) *relayFlow {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if e, ok := r.flows[client]; ok {
		r.lru.MoveToFront(e)
		return e.Value.(*relayFlow)
	}
	for r.lru.Len() >= relayMaxFlows {
		old := r.lru.Remove(r.lru.Back()).(*relayFlow)
		delete(r.flows, old.client)
		old.up.Close() // its reader ends
	}
	up, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(r.backend))
	if err != nil {
		return nil
	}
	f := &relayFlow{client: client, up: up}
	r.flows[client] = r.lru.PushFront(f)
	r.wg.Add(1)
	go r.readUpstream(f)
	return f
}

// readUpstream sends the backend's answers back to the client, each after
// the delay current when it arrived.
func (r *Relay) readUpstream(f *relayFlow) {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := f.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable from a dead backend
		}
		d := time.Duration(r.delay.Load())
		if d <= 0 {
			_, _ = r.udp.WriteToUDPAddrPort(buf[:n], f.client)
			continue
		}
		if r.pending.Add(1) > relayMaxPending {
			r.pending.Add(-1)
			r.dropped.Add(1)
			continue
		}
		msg := append([]byte(nil), buf[:n]...)
		time.AfterFunc(d, func() {
			defer r.pending.Add(-1)
			_, _ = r.udp.WriteToUDPAddrPort(msg, f.client) // fails harmlessly once closed
		})
	}
}

func (r *Relay) serveTCP() {
	defer r.wg.Done()
	for {
		c, err := r.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if !r.track(c) {
			c.Close()
			continue
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.untrack(c)
			if r.dropNow() {
				r.dropped.Add(1)
				_, _ = io.Copy(io.Discard, c) // a black hole: read, never answer
				return
			}
			r.relayTCP(c)
		}()
	}
}

// track registers a connection so Close can end it; false when closed or
// at relayMaxConns.
func (r *Relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.conns) >= relayMaxConns {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *Relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	c.Close()
}

// relayChunk is a piece of the backend's answer stream and when it came.
type relayChunk struct {
	b  []byte
	at time.Time
}

// relayTCP forwards one client connection: queries at once, the answer
// stream chunk by chunk, each chunk Delay after it came from the backend.
func (r *Relay) relayTCP(c net.Conn) {
	up, err := net.DialTimeout("tcp4", r.backend.String(), relayDialTimeout)
	if err != nil {
		return
	}
	if !r.track(up) {
		up.Close()
		return
	}
	defer r.untrack(up)
	r.forwarded.Add(1)
	chunks := make(chan relayChunk, relayChunks)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 16<<10)
			n, err := up.Read(buf)
			if n > 0 {
				chunks <- relayChunk{b: buf[:n], at: time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		_, _ = io.Copy(up, c)
		// The client is done sending: let the backend see EOF, and end
		// the answer stream once it has answered.
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	for ch := range chunks {
		if wait := time.Until(ch.at.Add(time.Duration(r.delay.Load()))); wait > 0 {
			time.Sleep(wait) // this connection's own writer: the delay itself
		}
		if _, err := c.Write(ch.b); err != nil {
			up.Close() // ends the reader, which closes chunks
		}
	}
}

// Close stops the relay: its sockets, every flow and connection. It is
// idempotent and waits for its goroutines (not for delayed answers, which
// then fail to send).
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.udp.Close()
	r.tcp.Close()
	for _, e := range r.flows {
		e.Value.(*relayFlow).up.Close()
	}
	r.flows = nil
	r.lru.Init()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
