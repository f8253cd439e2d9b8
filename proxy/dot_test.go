package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
)

// writeTestCert writes a fresh self-signed certificate for 127.0.0.1, ::1
// and localhost into dir and returns its files and a pool trusting it.
func writeTestCert(t testing.TB, dir, cn string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(c)
	return certFile, keyFile, pool
}

func servedCN(t *testing.T, s *certStore) string {
	t.Helper()
	c, err := s.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestTransportCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeTestCert(t, dir, "first")
	s, err := newCertStore(&config.TLS{Cert: certFile, Key: keyFile}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// force lets the next handshake look at the files again.
	force := func() { time.Sleep(certfile.CheckInterval + 100*time.Millisecond) }
	if cn := servedCN(t, s); cn != "first" {
		t.Fatalf("serving %q", cn)
	}
	t.Run("a renewed certificate is served without a restart", func(t *testing.T) {
		writeTestCert(t, dir, "second")
		force()
		if cn := servedCN(t, s); cn != "second" {
			t.Fatalf("serving %q, want second", cn)
		}
	})
	t.Run("a broken certificate keeps the old one serving", func(t *testing.T) {
		if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
			t.Fatal(err)
		}
		force()
		if cn := servedCN(t, s); cn != "second" {
			t.Fatalf("serving %q, want second", cn)
		}
	})
	t.Run("missing files fail at start", func(t *testing.T) {
		if _, err := newCertStore(&config.TLS{Cert: filepath.Join(dir, "nope.pem"), Key: keyFile}, slog.Default()); err == nil {
			t.Fatal("want an error")
		}
	})
}
