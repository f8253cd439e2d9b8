package stream

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anyfront/anyfront/internal/proxyproto"
)

// PROXY protocol v2 (haproxy's proxy-protocol.txt, section 2.2) on stream
// listeners: a load balancer in front of anyfront prefixes each connection
// with a binary header naming the client it accepted the connection from.
// The header is read only from the configured trusted sources; from anyone
// else a header would let a client pick the address the ACL sees.

const (
	// ppHeaderTimeout bounds the header read: a load balancer sends the
	// header with its first segment, so one that takes longer is broken or
	// a client holding a slot open.
	ppHeaderTimeout = 5 * time.Second
	// ppMaxPending bounds connections whose header is still being read, so
	// slow senders cannot tie up goroutines and memory without limit.
	ppMaxPending = 256
)

// ppListener reads PROXY headers on connections from trusted sources before
// handing them on, with their RemoteAddr replaced by the carried source.
// Headers are read off the accept path, one goroutine per pending
// connection (at most ppMaxPending), so one slow sender cannot stall
// accepts. Connections from other sources are passed on untouched. The
// front end that owns it runs acceptLoop inside its Serve.
type ppListener struct {
	inner   net.Listener
	trusted []netip.Prefix
	st      *Counters

	ready     chan net.Conn // unbuffered: a conn is either delivered or closed
	done      chan struct{}
	closeOnce sync.Once
	sem       chan struct{}
	mu        sync.Mutex
	pending   map[net.Conn]struct{}
	readers   sync.WaitGroup
}

// wrapPROXY wraps ln when trusted names sources to read headers from; it
// returns the listener to accept from and the wrapper, nil without one.
func wrapPROXY(ln net.Listener, trusted []netip.Prefix, st *Counters) (net.Listener, *ppListener) {
	if len(trusted) == 0 {
		return ln, nil
	}
	pl := &ppListener{
		inner: ln, trusted: trusted, st: st,
		ready: make(chan net.Conn), done: make(chan struct{}),
		sem: make(chan struct{}, ppMaxPending), pending: map[net.Conn]struct{}{},
	}
	return pl, pl
}

func (l *ppListener) isTrusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range l.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// acceptLoop accepts until Close, then waits for the header reads.
func (l *ppListener) acceptLoop() {
	defer l.readers.Wait()
	for {
		c, err := l.inner.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if !l.isTrusted(addrOf(c.RemoteAddr()).Addr()) {
			l.st.ppUntrusted.Add(1)
			l.deliver(c)
			continue
		}
		select {
		case l.sem <- struct{}{}:
		default:
			l.st.ppRefused.Add(1)
			c.Close()
			continue
		}
		l.mu.Lock()
		l.pending[c] = struct{}{}
		l.mu.Unlock()
		l.readers.Go(func() { l.readHeader(c) })
	}
}

func (l *ppListener) readHeader(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(ppHeaderTimeout))
	src, local, err := proxyproto.ReadHeader(c)
	_ = c.SetReadDeadline(time.Time{})
	l.mu.Lock()
	delete(l.pending, c)
	l.mu.Unlock()
	<-l.sem
	if err != nil {
		l.st.ppBadHeader.Add(1)
		c.Close()
		return
	}
	if !local {
		c = &ppConn{Conn: c, remote: net.TCPAddrFromAddrPort(src)}
	}
	l.deliver(c)
}

func (l *ppListener) deliver(c net.Conn) {
	select {
	case l.ready <- c:
	case <-l.done:
		c.Close()
	}
}

// Accept returns the next connection whose header (if it owed one) was read.
func (l *ppListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ready:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting and closes connections still owing their header.
func (l *ppListener) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.done)
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.pending {
			c.Close()
		}
		l.mu.Unlock()
	})
	return err
}

// Addr is the listening address.
func (l *ppListener) Addr() net.Addr { return l.inner.Addr() }

// ppConn is a connection whose client is the one its PROXY header named.
type ppConn struct {
	net.Conn
	remote net.Addr
}

// RemoteAddr is the client the load balancer accepted the connection from.
func (c *ppConn) RemoteAddr() net.Addr { return c.remote }
