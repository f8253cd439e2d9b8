package stream

import (
	"crypto/tls"
	"log/slog"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
)

// DNS over TLS (RFC 7858) is the TCP front end on TLS connections (tcp.go),
// so DoT shares its framing, pipelining, bounds and the one validation path.
// This file holds what TLS adds: certificates and the handshake count.

// Certs is a listener's certificate, reloaded without a restart when its
// files change; a pair that fails to load keeps the old one serving
// (internal/certfile, which the admin API's TLS shares).
type Certs struct{ *certfile.Store }

// LoadCerts loads t's certificate and key; they must load now.
func LoadCerts(t *config.TLS, log *slog.Logger) (*Certs, error) {
	s, err := certfile.New(t.Cert, t.Key, log)
	if err != nil {
		return nil, err
	}
	return &Certs{s}, nil
}

// tlsConfig is the server side for one protocol: TLS 1.2 at least (1.3 is
// negotiated when the client has it; QUIC requires it), ALPN as the
// protocol's RFC says, session tickets on (Go's default) for resumption.
func (s *Certs) tlsConfig(proto string) *tls.Config {
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

// dotConn counts a failed handshake. Reads come from the connection's one
// reader goroutine, and writes only follow a read, so shook needs no lock.
type dotConn struct {
	*tls.Conn
	st    *Counters
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
