package proxy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/anyfront/anyfront/config"
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
	// ppMaxBody bounds the address block and TLVs after the fixed 16 bytes.
	// Addresses take at most 216 bytes (AF_UNIX); the rest are TLVs, which
	// anyfront skips. 2 KiB leaves room for the TLVs load balancers send
	// (ALPN, authority, SSL, unique ID) without reading 64 KiB per connection.
	ppMaxBody = 2048
	// ppMaxPending bounds connections whose header is still being read, so
	// slow senders cannot tie up goroutines and memory without limit.
	ppMaxPending = 256
)

// ppSignature opens every v2 header.
var ppSignature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// PROXY header errors; each closes the connection.
var (
	errPPSignature = errors.New("proxy protocol: no v2 signature")
	errPPVersion   = errors.New("proxy protocol: not version 2")
	errPPCommand   = errors.New("proxy protocol: unknown command")
	errPPTooLong   = errors.New("proxy protocol: header too long")
	errPPAddress   = errors.New("proxy protocol: address block too short")
)

// readProxyHeader reads one v2 header from r, byte-exactly (nothing after the
// header is consumed). It returns the source address it carries, or local
// when the sender speaks for itself (the LOCAL command, health checks) or
// the family is one anyfront has no use for (UNSPEC, AF_UNIX).
func readProxyHeader(r io.Reader) (src netip.AddrPort, local bool, err error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return src, false, fmt.Errorf("proxy protocol header: %w", err)
	}
	if !bytes.Equal(hdr[:12], ppSignature) {
		return src, false, errPPSignature
	}
	if hdr[12]>>4 != 2 {
		return src, false, errPPVersion
	}
	cmd := hdr[12] & 0xF
	if cmd > 1 {
		return src, false, errPPCommand
	}
	n := int(binary.BigEndian.Uint16(hdr[14:]))
	if n > ppMaxBody {
		return src, false, errPPTooLong
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return src, false, fmt.Errorf("proxy protocol header: %w", err)
	}
	if cmd == 0 { // LOCAL: the connection is the sender's own
		return src, true, nil
	}
	switch hdr[13] >> 4 {
	case 1: // AF_INET: src, dst, sport, dport
		if n < 12 {
			return src, false, errPPAddress
		}
		a := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:])), false, nil
	case 2: // AF_INET6
		if n < 36 {
			return src, false, errPPAddress
		}
		a := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:])), false, nil
	}
	return src, true, nil
}

// appendProxyHeader appends a v2 PROXY header for a TCP connection from src
// to dst, as a load balancer in front of a listener sends it.
func appendProxyHeader(b []byte, src, dst netip.AddrPort) []byte {
	return appendPPv2(b, src, dst, true)
}

// ppListener reads PROXY headers on connections from trusted sources before
// handing them on, with their RemoteAddr replaced by the carried source.
// Headers are read off the accept path, one goroutine per pending
// connection (at most ppMaxPending), so one slow sender cannot stall
// accepts. Connections from other sources are passed on untouched.
type ppListener struct {
	inner   net.Listener
	p       *Proxy
	trusted []netip.Prefix
	st      *transportStats

	ready     chan net.Conn // unbuffered: a conn is either delivered or closed
	done      chan struct{}
	closeOnce sync.Once
	sem       chan struct{}
	mu        sync.Mutex
	pending   map[net.Conn]struct{}
}

// proxyProtoListener wraps ln when l asks for PROXY protocol; it starts the
// wrapper's accept goroutine (tracked by p.wg, stopped by Close).
func (p *Proxy) proxyProtoListener(ln net.Listener, l config.Listen, st *transportStats) net.Listener {
	if !l.ProxyProtocol {
		return ln
	}
	pl := &ppListener{
		inner: ln, p: p, trusted: l.ProxyProtocolFrom, st: st,
		ready: make(chan net.Conn), done: make(chan struct{}),
		sem: make(chan struct{}, ppMaxPending), pending: map[net.Conn]struct{}{},
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		pl.acceptLoop()
	}()
	return pl
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

func (l *ppListener) acceptLoop() {
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
		l.p.wg.Add(1)
		go func() {
			defer l.p.wg.Done()
			l.readHeader(c)
		}()
	}
}

func (l *ppListener) readHeader(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(ppHeaderTimeout))
	src, local, err := readProxyHeader(c)
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

// transportStats lets Proxy.TransportStats find the counters behind a
// do53 TCP listener with PROXY protocol.
func (l *ppListener) transportStats() (string, *transportStats) { return "do53", l.st }

// ppConn is a connection whose client is the one its PROXY header named.
type ppConn struct {
	net.Conn
	remote net.Addr
}

// RemoteAddr is the client the load balancer accepted the connection from.
func (c *ppConn) RemoteAddr() net.Addr { return c.remote }
