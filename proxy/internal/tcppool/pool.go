package tcppool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anyfront/anyfront/internal/proxyproto"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

var (
	ErrClosed   = errors.New("backend closed")
	ErrConnLost = errors.New("backend connection lost")
	ErrTimeout  = errors.New("backend timed out")
	// ErrBackendBusy: every PROXY protocol connection to the backend
	// carries another client's queries (ppMaxConns).
	ErrBackendBusy = errors.New("backend PROXY protocol connections all busy")
)

// ppMaxConns bounds the TCP connections to one backend with proxy_protocol.
// A PROXY header names one client for a connection's whole life, so such
// connections are kept per client (address and port, as one client
// connection) instead of shared: pipelined queries of one client
// connection reuse its backend connection, and idle ones are closed to
// make room. 256 per backend keeps descriptors bounded when many stream
// clients are active at once; past it a query fails over to another
// backend (counted as a retry) or gets SERVFAIL.
const ppMaxConns = 256

// Pool keeps a few reused, pipelined TCP connections to one backend, so a
// TCP query costs no handshake. For a backend with proxy_protocol it keeps
// one per client instead (byClient, at most ppMaxConns).
type Pool struct {
	name string
	addr netip.AddrPort
	pp   bool
	// wg counts the connections' readers, for the owner to wait on.
	wg  *sync.WaitGroup
	max int
	mu  sync.Mutex
	// conns are the live connections; next spreads queries over them.
	conns    []*backendConn
	next     int
	byClient map[netip.AddrPort]*backendConn
	ppMax    int // ppMaxConns; tests lower it
	closed   bool
}

// backendConn is one pipelined connection: any number of writers, one reader
// that hands each answer to the waiter registered under its ID.
type backendConn struct {
	c   net.Conn
	wmu sync.Mutex
	mu  sync.Mutex
	// pending is bounded by the 16-bit ID space and, in practice, by the
	// client side's bounds on connections and queries per connection.
	pending map[uint16]chan []byte
	dead    bool
	used    bool // has carried an answer: a failure on it may just be the backend's idle close
	// client is whom the PROXY header named, in a per-client connection.
	client netip.AddrPort
}

// NewPool makes the pool of the backend name at addr: at most max shared
// connections, or, with pp (every connection starts with a PROXY v2
// header), one per client. Each connection's reader is counted in wg, so
// the owner can wait for them after Close.
func NewPool(name string, addr netip.AddrPort, pp bool, max int, wg *sync.WaitGroup) *Pool {
	if max < 1 {
		max = 1
	}
	return &Pool{name: name, addr: addr, pp: pp, wg: wg, max: max, byClient: map[netip.AddrPort]*backendConn{}, ppMax: ppMaxConns}
}

// Exchange sends query (any ID) and returns the backend's answer, whose ID is
// the one it was sent with; the caller restores the client's. client and
// local (the address the client reached) go into the PROXY header when the
// backend wants one.
func (tp *Pool) Exchange(query []byte, timeout time.Duration, client, local netip.AddrPort) ([]byte, uint16, error) {
	deadline := time.Now().Add(timeout)
	for attempt := 0; ; attempt++ {
		bc, err := tp.conn(client, local, deadline)
		if err != nil {
			return nil, 0, err
		}
		resp, id, reused, err := bc.exchange(query, deadline)
		if err == ErrConnLost && reused && attempt == 0 {
			// The backend closed an idle connection as we wrote to it:
			// that says nothing about its health, so try a fresh one.
			continue
		}
		return resp, id, err
	}
}

// conn returns the connection a query for client goes on: client's own
// for a PROXY protocol backend, else one of the shared ones.
func (tp *Pool) conn(client, local netip.AddrPort, deadline time.Time) (*backendConn, error) {
	if tp.pp {
		return tp.getFor(client, local, deadline)
	}
	return tp.get(deadline)
}

func (tp *Pool) get(deadline time.Time) (*backendConn, error) {
	tp.mu.Lock()
	if tp.closed {
		tp.mu.Unlock()
		return nil, ErrClosed
	}
	if len(tp.conns) >= tp.max {
		bc := tp.conns[tp.next%len(tp.conns)]
		tp.next++
		tp.mu.Unlock()
		return bc, nil
	}
	tp.mu.Unlock()

	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", tp.addr.String())
	if err != nil {
		return nil, fmt.Errorf("dial backend %s: %w", tp.name, err)
	}
	bc := &backendConn{c: c, pending: map[uint16]chan []byte{}}
	tp.mu.Lock()
	if tp.closed || len(tp.conns) >= tp.max {
		// Lost a race with another dialer or with close: use the pool's.
		closed := tp.closed
		tp.mu.Unlock()
		c.Close()
		if closed {
			return nil, ErrClosed
		}
		return tp.get(deadline)
	}
	tp.conns = append(tp.conns, bc)
	tp.mu.Unlock()
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		bc.readLoop()
		tp.remove(bc)
	}()
	return bc, nil
}

// getFor returns client's connection to a PROXY protocol backend, dialling
// it (header first) when there is none.
func (tp *Pool) getFor(client, local netip.AddrPort, deadline time.Time) (*backendConn, error) {
	tp.mu.Lock()
	if tp.closed {
		tp.mu.Unlock()
		return nil, ErrClosed
	}
	if bc := tp.byClient[client]; bc != nil {
		tp.mu.Unlock()
		return bc, nil
	}
	if len(tp.byClient) >= tp.ppMax && !tp.evictIdle() {
		tp.mu.Unlock()
		return nil, ErrBackendBusy
	}
	tp.mu.Unlock()

	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial("tcp", tp.addr.String())
	if err != nil {
		return nil, fmt.Errorf("dial backend %s: %w", tp.name, err)
	}
	var hdr []byte
	if client.IsValid() {
		hdr = proxyproto.AppendV2(make([]byte, 0, proxyproto.MaxV2Len), client, local, true)
	} else {
		hdr = proxyproto.AppendV2Local(nil)
	}
	_ = c.SetWriteDeadline(deadline)
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, fmt.Errorf("proxy header to backend %s: %w", tp.name, err)
	}
	bc := &backendConn{c: c, pending: map[uint16]chan []byte{}, client: client}
	tp.mu.Lock()
	if tp.closed || tp.byClient[client] != nil || len(tp.byClient) >= tp.ppMax {
		// Lost a race with another dialler for this client or the last
		// free place, or with close: start over.
		closed := tp.closed
		tp.mu.Unlock()
		c.Close()
		if closed {
			return nil, ErrClosed
		}
		return tp.getFor(client, local, deadline)
	}
	tp.byClient[client] = bc
	tp.mu.Unlock()
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		bc.readLoop()
		tp.remove(bc)
	}()
	return bc, nil
}

// evictIdle closes one per-client connection with no query pending, to
// make room for another client; false when all are busy. Called with tp.mu
// held.
func (tp *Pool) evictIdle() bool {
	for client, bc := range tp.byClient {
		bc.mu.Lock()
		idle := len(bc.pending) == 0
		if idle {
			bc.dead = true // no new query may pick it up now
		}
		bc.mu.Unlock()
		if idle {
			delete(tp.byClient, client)
			bc.c.Close()
			return true
		}
	}
	return false
}

func (tp *Pool) remove(bc *backendConn) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.byClient[bc.client] == bc {
		delete(tp.byClient, bc.client)
		return
	}
	for i, x := range tp.conns {
		if x == bc {
			tp.conns = append(tp.conns[:i], tp.conns[i+1:]...)
			return
		}
	}
}

func (tp *Pool) Close() {
	tp.mu.Lock()
	tp.closed = true
	conns := tp.conns
	tp.conns = nil
	for _, bc := range tp.byClient {
		conns = append(conns, bc)
	}
	clear(tp.byClient)
	tp.mu.Unlock()
	for _, bc := range conns {
		bc.c.Close()
	}
}

func (bc *backendConn) exchange(query []byte, deadline time.Time) ([]byte, uint16, bool, error) {
	w, err := bc.start(query, deadline)
	if err != nil {
		return nil, 0, w.reused, err
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case resp := <-w.ch:
		if resp == nil {
			return nil, 0, w.reused, ErrConnLost
		}
		return resp, w.id, w.reused, nil
	case <-t.C:
		bc.forget(w.id)
		return nil, 0, w.reused, ErrTimeout
	}
}

// Wait is one query written to a backend connection, awaiting its
// answer on ch (nil there: the connection was lost).
type Wait struct {
	bc     *backendConn
	id     uint16
	ch     chan []byte
	reused bool
}

// start writes query under a fresh ID; the answer comes on the returned
// wait's channel. On error the wait is still returned, for its reused flag.
// The wait is a value: the plain exchange pays no allocation for it.
func (bc *backendConn) start(query []byte, deadline time.Time) (Wait, error) {
	w := Wait{bc: bc, ch: make(chan []byte, 1), reused: true}
	bc.mu.Lock()
	if bc.dead {
		bc.mu.Unlock()
		return w, ErrConnLost
	}
	w.reused = bc.used
	id := uint16(rand.Uint32())
	for _, taken := bc.pending[id]; taken; _, taken = bc.pending[id] {
		id = uint16(rand.Uint32())
	}
	w.id = id
	bc.pending[id] = w.ch
	bc.mu.Unlock()

	out := make([]byte, 2+len(query))
	binary.BigEndian.PutUint16(out, uint16(len(query)))
	copy(out[2:], query)
	binary.BigEndian.PutUint16(out[2:], id)
	bc.wmu.Lock()
	_ = bc.c.SetWriteDeadline(deadline)
	_, err := bc.c.Write(out)
	bc.wmu.Unlock()
	if err != nil {
		bc.c.Close() // the reader then fails every waiter
		bc.forget(id)
		return w, ErrConnLost
	}
	return w, nil
}

// Start sends query on one of the pool's connections (dialling one when
// needed) and returns without waiting for the answer; a reused connection
// the backend closed as we wrote to it is replaced once, as in exchange.
func (tp *Pool) Start(query []byte, deadline time.Time, client, local netip.AddrPort) (Wait, error) {
	for attempt := 0; ; attempt++ {
		bc, err := tp.conn(client, local, deadline)
		if err != nil {
			return Wait{}, err
		}
		w, err := bc.start(query, deadline)
		if err == ErrConnLost && w.reused && attempt == 0 {
			continue
		}
		return w, err
	}
}

// SetPPMax changes the bound on per-client connections (ppMaxConns), for
// tests that reach it with a few clients.
func (tp *Pool) SetPPMax(n int) {
	tp.mu.Lock()
	tp.ppMax = n
	tp.mu.Unlock()
}

// Conns is how many connections the pool holds now.
func (tp *Pool) Conns() int {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.byClient) + len(tp.conns)
}

// C delivers the answer; nil on it means the connection was lost.
func (w Wait) C() <-chan []byte { return w.ch }

// Forget stops waiting: an answer that comes later is dropped.
func (w Wait) Forget() { w.bc.forget(w.id) }

func (bc *backendConn) forget(id uint16) {
	bc.mu.Lock()
	delete(bc.pending, id)
	bc.mu.Unlock()
}

// readLoop delivers answers until the connection fails, then fails every
// waiter at once so none waits for its timeout.
func (bc *backendConn) readLoop() {
	var lenBuf [2]byte
	for {
		if _, err := io.ReadFull(bc.c, lenBuf[:]); err != nil {
			break
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n < dnswire.HeaderLen {
			break
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(bc.c, msg); err != nil {
			break
		}
		id := binary.BigEndian.Uint16(msg)
		bc.mu.Lock()
		ch, ok := bc.pending[id]
		delete(bc.pending, id)
		bc.used = true
		bc.mu.Unlock()
		if ok {
			ch <- msg
		}
	}
	bc.c.Close()
	bc.mu.Lock()
	bc.dead = true
	for id, ch := range bc.pending {
		ch <- nil
		delete(bc.pending, id)
	}
	bc.mu.Unlock()
}
