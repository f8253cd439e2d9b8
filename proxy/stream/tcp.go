package stream

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

// ConnLimit bounds client connections in total and per client address. The
// TCP, DoT and DoH front ends share one, so a client's connections count
// together whichever of them it uses; each DoQ front end has its own.
type ConnLimit struct {
	max, maxPerClient int

	mu        sync.Mutex
	total     int
	perClient map[netip.Addr]int
}

// NewConnLimit bounds connections by lim's MaxConns and MaxConnsPerClient.
func NewConnLimit(lim config.TCPLimits) *ConnLimit {
	return &ConnLimit{max: lim.MaxConns, maxPerClient: lim.MaxConnsPerClient, perClient: map[netip.Addr]int{}}
}

func (l *ConnLimit) admit(a netip.Addr) bool {
	a = a.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max || l.perClient[a] >= l.maxPerClient {
		return false
	}
	l.total++
	l.perClient[a]++
	return true
}

func (l *ConnLimit) release(a netip.Addr) {
	a = a.Unmap()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perClient[a]--; l.perClient[a] <= 0 {
		delete(l.perClient, a)
	}
}

// Conns is the number of connections open under the bound.
func (l *ConnLimit) Conns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// ConnsFrom is the number of connections client a has open under the bound.
func (l *ConnLimit) ConnsFrom(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perClient[a.Unmap()]
}

// connSet is one front end's open connections, so that Close can stop
// their reads; once closing, it takes no more.
type connSet struct {
	mu      sync.Mutex
	m       map[net.Conn]struct{}
	closing bool
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if s.m == nil {
		s.m = map[net.Conn]struct{}{}
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, c)
}

// refuseNew takes no more connections.
func (s *connSet) refuseNew() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
}

// closeAll closes every connection.
func (s *connSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.m {
		_ = c.Close()
	}
}

// stopReads ends every connection's reads; what was read is still answered.
func (s *connSet) stopReads() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for c := range s.m {
		_ = c.SetReadDeadline(time.Now())
	}
}

// TCPConfig configures a TCP or DoT front end.
type TCPConfig struct {
	Limits config.TCPLimits
	// Conns is the connection bound shared with the other TCP front ends.
	Conns *ConnLimit
	// Certs, when set, makes the front end DoT: TLS with ALPN "dot".
	Certs *Certs
	// ProxyFrom, when set, are the sources whose connections start with a
	// PROXY protocol v2 header (proxyproto.go).
	ProxyFrom []netip.Prefix
}

// TCP serves DNS over TCP, or over TLS when configured with certificates.
// A TCP connection gets a goroutine and each of its pipelined queries
// another; a DoT connection answers through Handler.AnswerAsync instead
// (dotasync.go). All is bounded: connections in total and per client, queries in flight per
// connection, queries and lifetime per connection, and an idle timeout on
// every read. A DoT connection's TLS handshake runs on its first read, under
// that read's deadline, so a client that stalls it is bounded like an idle
// one.
type TCP struct {
	ln    net.Listener // maybe a *ppListener
	pp    *ppListener
	lim   config.TCPLimits
	bound *ConnLimit
	tls   *tls.Config // nil: plain TCP
	tr    dnswire.Transport
	deps  Deps
	st    Counters

	conns    connSet
	inflight atomic.Int64
	stop     stopper
}

// NewTCP makes a front end serving ln, which it owns from now on.
func NewTCP(ln net.Listener, cfg TCPConfig, deps Deps) *TCP {
	f := &TCP{lim: cfg.Limits, bound: cfg.Conns, tr: dnswire.TCP, deps: deps.withDefaults()}
	if f.bound == nil {
		f.bound = NewConnLimit(cfg.Limits)
	}
	if cfg.Certs != nil {
		f.tls, f.tr = cfg.Certs.tlsConfig("dot"), dnswire.DoT
	}
	f.ln, f.pp = wrapPROXY(ln, cfg.ProxyFrom, &f.st)
	return f
}

// Serve accepts and serves connections until ctx ends or Close is called.
func (f *TCP) Serve(ctx context.Context) error {
	if !f.stop.start() {
		return nil // closed before it ever ran
	}
	defer context.AfterFunc(ctx, func() { f.Close() })()
	var wg sync.WaitGroup
	if f.pp != nil {
		wg.Go(f.pp.acceptLoop)
	}
	defer wg.Wait() // connections answer what they read before Serve returns
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || f.stop.closed() {
				return nil
			}
			// Out of fds and the like: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if f.tls != nil {
			f.st.conns.Add(1)
			c = &dotConn{Conn: tls.Server(c, f.tls), st: &f.st}
		}
		client := addrOf(c.RemoteAddr())
		if !f.admit(c, client) {
			f.deps.ConnsRefused.Add(1)
			c.Close()
			continue
		}
		wg.Go(func() {
			if f.tls != nil {
				f.handleAsync(c, client)
			} else {
				f.handle(c, client)
			}
			f.release(c, client)
		})
	}
}

func addrOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.AddrPort()
	}
	return netip.AddrPort{}
}

func (f *TCP) admit(c net.Conn, client netip.AddrPort) bool {
	return admitConn(&f.conns, f.bound, c, client)
}

// admitConn takes c into a front end's open connections and under the
// shared bounds (total and per client), or reports that it may not come.
func admitConn(conns *connSet, bound *ConnLimit, c net.Conn, client netip.AddrPort) bool {
	if !conns.add(c) {
		return false
	}
	if !bound.admit(client.Addr()) {
		conns.remove(c)
		return false
	}
	return true
}

func (f *TCP) release(c net.Conn, client netip.AddrPort) {
	c.Close()
	f.bound.release(client.Addr())
	f.conns.remove(c)
}

// Close stops accepting and stops every connection's reads; queries already
// read are still answered before their connection closes.
func (f *TCP) Close() error {
	var err error
	f.stop.close(func(bool) {
		err = f.ln.Close()
		f.conns.stopReads()
	})
	return err
}

// Inflight is the number of queries read and not yet answered.
func (f *TCP) Inflight() int64 { return f.inflight.Load() }

// Counters are the DoT or PROXY protocol counters (plain TCP has none).
func (f *TCP) Counters() *Counters { return &f.st }

// Addr is the listening address.
func (f *TCP) Addr() net.Addr { return f.ln.Addr() }

// tcpConn is one client connection's writer side.
type tcpConn struct {
	c   net.Conn
	end time.Time // the connection's lifetime bound (max_conn_time)
	wmu sync.Mutex
	// broken is set on the first failed write: a client that stops reading
	// gets its connection closed, not a fresh deadline per pending answer.
	broken bool
}

func (tc *tcpConn) write(msg []byte, deadline time.Time) {
	buf := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	copy(buf[2:], msg)
	tc.wmu.Lock()
	defer tc.wmu.Unlock()
	if tc.broken {
		return
	}
	if deadline.After(tc.end) {
		deadline = tc.end
	}
	_ = tc.c.SetWriteDeadline(deadline)
	if _, err := tc.c.Write(buf); err != nil {
		tc.broken = true
		tc.c.Close() // the reader fails too, and the handler ends
	}
}

func (f *TCP) handle(c net.Conn, client netip.AddrPort) {
	end := time.Now().Add(f.lim.MaxConnTime)
	tc := &tcpConn{c: c, end: end}
	local := addrOf(c.LocalAddr())
	sem := make(chan struct{}, f.lim.MaxInflightPerConn)
	var wg sync.WaitGroup
	defer wg.Wait() // answer what was read before closing
	var lenBuf [2]byte
	for q := 0; q < f.lim.MaxQueriesPerConn; q++ {
		dl := time.Now().Add(f.lim.IdleTimeout)
		if dl.After(end) {
			dl = end
		}
		_ = c.SetReadDeadline(dl)
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n == 0 {
			f.deps.Short.Add(1)
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		f.deps.Queries.Add(1)
		// Pipelining past the bound blocks here: no more reads until
		// one of this connection's queries is answered.
		sem <- struct{}{}
		wg.Add(1)
		f.inflight.Add(1)
		go func() {
			defer func() { <-sem; wg.Done(); f.inflight.Add(-1) }()
			// nil is a dropped malformed query: the connection stays,
			// as its other queries may be fine.
			if resp := f.deps.Handler.Answer(msg, client, local, f.tr); resp != nil {
				tc.write(resp, time.Now().Add(f.lim.IdleTimeout))
			}
		}()
	}
}
