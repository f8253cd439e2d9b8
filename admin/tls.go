package admin

import (
	"crypto/tls"
	"fmt"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
)

// HTTPS for the admin API (admin.tls). The bearer token crosses the wire on
// every mutating call, so an admin listener off loopback should have it.
// The certificate follows the DoT listener's rules: renewed files are picked
// up by themselves within a second, a reload loads them at once, and a pair
// that does not load leaves the old one serving.

// newCerts loads admin.tls's pair; nil config means plain HTTP.
func newCerts(t *config.TLS, s *Server) (*certfile.Store, error) {
	if t == nil {
		return nil, nil
	}
	c, err := certfile.New(t.Cert, t.Key, s.log)
	if err != nil {
		return nil, fmt.Errorf("admin.tls: %w", err)
	}
	return c, nil
}

// tlsConfig is the listener's: TLS 1.2 at least, HTTP/2 and HTTP/1.1 (the
// net/http defaults once a config is set).
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.certs.GetCertificate,
	}
}

// reloadTLS loads the configured pair again. Turning TLS on or off needs a
// restart: the listener's scheme is fixed while it runs, and silently
// staying on plain HTTP after an operator asked for HTTPS would be worse
// than saying so.
func (s *Server) reloadTLS(t *config.TLS) error {
	switch {
	case (t == nil) != (s.certs == nil):
		s.log.Warn("admin.tls added or removed: restart anyfront to apply it", "tls_now", s.certs != nil)
		return nil
	case t == nil:
		return nil
	}
	if err := s.certs.Reload(t.Cert, t.Key); err != nil {
		return fmt.Errorf("admin.tls: %w", err)
	}
	s.log.Info("admin tls certificate loaded", "cert", t.Cert)
	return nil
}
