package stream

import (
	"context"
	"crypto/tls"
	"errors"
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
// A connection gets a goroutine; a pipelined TCP query gets another while
// its backend answers, a DoT query none (Handler.AnswerAsync; conn.go). All
// is bounded: connections in total and per client, queries in flight per
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
		end := time.Now().Add(f.lim.MaxConnTime)
		nb := newNBConn(c, f.lim.IdleTimeout, end, f.deps.SlowReaders)
		c = nb
		if f.tls != nil {
			f.st.conns.Add(1)
			c = &dotConn{Conn: tls.Server(nb, f.tls), st: &f.st}
		}
		client := addrOf(c.RemoteAddr())
		if !f.admit(c, client) {
			f.deps.ConnsRefused.Add(1)
			c.Close()
			continue
		}
		wg.Go(func() {
			f.handle(c, client, end)
			nb.drained() // the last answers reach a slow reader too
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
