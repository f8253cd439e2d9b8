package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
)

// DNS over TLS (RFC 7858): a TLS listener whose connections the TCP front
// end serves as it serves plain TCP ones, so DoT shares its framing,
// pipelining, bounds and the one validation path.

// transportStats counts what happens on one encrypted or PROXY listener.
type transportStats struct {
	conns         atomic.Uint64 // connections accepted (DoT, DoH) or QUIC connections (DoQ)
	handshakeFail atomic.Uint64 // TLS or QUIC handshakes that failed
	queries       atomic.Uint64 // DoH requests and DoQ streams carrying a query
	badRequests   atomic.Uint64 // DoH 4xx answers, DoQ protocol errors
	ppBadHeader   atomic.Uint64 // connections closed for a missing or bad PROXY header
	ppRefused     atomic.Uint64 // connections closed: too many headers pending
	ppUntrusted   atomic.Uint64 // connections from outside proxy_protocol_from, served plain
}

// TransportCounts are one protocol's transport counters, summed over its
// listeners.
type TransportCounts struct {
	Conns, HandshakeFailures, Queries, BadRequests uint64
	// ProxyBadHeader counts connections closed for a missing or invalid
	// PROXY header, ProxyRefused those closed because too many headers
	// were pending, ProxyUntrusted those served plain because they came
	// from outside proxy_protocol_from.
	ProxyBadHeader, ProxyRefused, ProxyUntrusted uint64
}

func (c *TransportCounts) add(s *transportStats) {
	c.Conns += s.conns.Load()
	c.HandshakeFailures += s.handshakeFail.Load()
	c.Queries += s.queries.Load()
	c.BadRequests += s.badRequests.Load()
	c.ProxyBadHeader += s.ppBadHeader.Load()
	c.ProxyRefused += s.ppRefused.Load()
	c.ProxyUntrusted += s.ppUntrusted.Load()
}

// statsSource is a listener with transport counters behind it.
type statsSource interface {
	transportStats() (protocol string, st *transportStats)
}

// TransportStats returns the DoT, DoH, DoQ and PROXY protocol counters by
// protocol ("do53" for TCP listeners with PROXY protocol). It is valid once
// Run has opened the listeners.
func (p *Proxy) TransportStats() map[string]TransportCounts {
	out := map[string]TransportCounts{}
	run := p.started.Load()
	if run == nil {
		return out
	}
	for _, ln := range run.tcpLns {
		if s, ok := ln.(statsSource); ok {
			proto, st := s.transportStats()
			c := out[proto]
			c.add(st)
			out[proto] = c
		}
	}
	return out
}

// listenTransport opens the listener of one dot, doh or doq address. The
// front end it returns is served by the TCP front end's accept loop (DoT), or
// runs its own server inside that loop's first Accept (DoH, DoQ), so Run
// starts, stops and waits for all of them the same way.
func (p *Proxy) listenTransport(l config.Listen) (net.Listener, error) {
	if l.TLS == nil {
		return nil, fmt.Errorf("listen %s %s: no tls", l.Protocol, l.Address)
	}
	certs, err := newCertStore(l.TLS, p.log)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", l.Protocol, l.Address, err)
	}
	st := &transportStats{}
	if l.Protocol == "doq" {
		return p.listenDoQ(l, certs.tlsConfig("doq"), st)
	}
	ln, err := net.Listen("tcp", l.Address.String())
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", l.Protocol, l.Address, err)
	}
	ln = p.proxyProtoListener(ln, l, st)
	if l.Protocol == "doh" {
		return p.newDoHFront(ln, l, certs, st), nil
	}
	return &dotListener{inner: ln, cfg: certs.tlsConfig("dot"), st: st}, nil
}

// certStore is a listener's certificate, reloaded without a restart when
// its files change; a pair that fails to load keeps the old one serving
// (internal/certfile, which the admin API's TLS shares).
type certStore struct{ *certfile.Store }

func newCertStore(t *config.TLS, log *slog.Logger) (*certStore, error) {
	s, err := certfile.New(t.Cert, t.Key, log)
	if err != nil {
		return nil, err
	}
	return &certStore{s}, nil
}

// tlsConfig is the server side for one protocol: TLS 1.2 at least (1.3 is
// negotiated when the client has it; QUIC requires it), ALPN as the
// protocol's RFC says, session tickets on (Go's default) for resumption.
func (s *certStore) tlsConfig(proto string) *tls.Config {
	c := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
	}
	switch proto {
	case "dot":
		c.NextProtos = []string{"dot"}
	case "doq":
		c.MinVersion = tls.VersionTLS13
		c.NextProtos = []string{"doq"}
	case "doh":
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return c
}

// dotListener turns accepted connections into TLS ones for the TCP front end.
// The handshake runs on the connection's first read, under the read deadline
// the front end sets, so a client that stalls it is bounded like an idle one.
type dotListener struct {
	inner net.Listener
	cfg   *tls.Config
	st    *transportStats
}

// Accept returns the next connection, its TLS handshake still to come.
func (l *dotListener) Accept() (net.Conn, error) {
	c, err := l.inner.Accept()
	if err != nil {
		return nil, err
	}
	l.st.conns.Add(1)
	return &dotConn{Conn: tls.Server(c, l.cfg), st: l.st}, nil
}

// Close stops the listener.
func (l *dotListener) Close() error { return l.inner.Close() }

// Addr is the listening address.
func (l *dotListener) Addr() net.Addr { return l.inner.Addr() }

func (l *dotListener) transportStats() (string, *transportStats) { return "dot", l.st }

// dotConn counts a failed handshake. Reads come from the connection's one
// reader goroutine, and writes only follow a read, so shook needs no lock.
type dotConn struct {
	*tls.Conn
	st    *transportStats
	shook bool
}

func (c *dotConn) Read(b []byte) (int, error) {
	if !c.shook {
		c.shook = true
		if err := c.Conn.Handshake(); err != nil {
			c.st.handshakeFail.Add(1)
			return 0, err
		}
	}
	return c.Conn.Read(b)
}
