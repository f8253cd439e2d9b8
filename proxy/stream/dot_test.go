package stream

import (
	"crypto/sha256"
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
	"github.com/anyfront/anyfront/internal/testlab"
)

// served is the fingerprint of the certificate s presents now.
func served(t *testing.T, s *Certs) [32]byte {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(c.Certificate[0])
}

func TestTransportCertReload(t *testing.T) {
	dir := t.TempDir()
	first := testlab.SelfSignedCert(t, dir, "dot")
	s, err := LoadCerts(&config.TLS{Cert: first.CertFile, Key: first.KeyFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// force lets the next handshake look at the files again.
	force := func() { time.Sleep(certfile.CheckInterval + 100*time.Millisecond) }
	if served(t, s) != first.SHA256 {
		t.Fatal("not serving the certificate loaded")
	}
	var second testlab.TestCert
	t.Run("a renewed certificate is served without a restart", func(t *testing.T) {
		second = testlab.SelfSignedCert(t, dir, "dot")
		force()
		if served(t, s) != second.SHA256 {
			t.Fatal("still serving the old certificate")
		}
	})
	t.Run("a broken certificate keeps the old one serving", func(t *testing.T) {
		if err := os.WriteFile(first.CertFile, []byte("not a certificate"), 0o644); err != nil {
			t.Fatal(err)
		}
		force()
		if served(t, s) != second.SHA256 {
			t.Fatal("not serving the last good certificate")
		}
	})
	t.Run("missing files fail at start", func(t *testing.T) {
		if _, err := LoadCerts(&config.TLS{Cert: filepath.Join(dir, "nope.pem"), Key: first.KeyFile}, slog.Default()); err == nil {
			t.Fatal("want an error")
		}
	})
}
