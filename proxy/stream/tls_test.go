package stream

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
)

// writeRSA writes a self-signed RSA certificate for localhost (testlab's
// are ECDSA).
func writeRSA(t *testing.T, dir string) config.CertPair {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := config.CertPair{Cert: filepath.Join(dir, "rsa.crt"), Key: filepath.Join(dir, "rsa.key")}
	os.WriteFile(p.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(p.Key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600)
	return p
}

func TestCertificateChoice(t *testing.T) {
	dir := t.TempDir()
	ec := testlab.SelfSignedCert(t, dir, "ec")
	rsaPair := writeRSA(t, dir)
	// RSA first in the config: the order must not decide.
	s, err := LoadCerts(&config.TLS{Cert: rsaPair.Cert, Key: rsaPair.Key, Certs: []config.CertPair{{Cert: ec.CertFile, Key: ec.KeyFile}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tls13 := []uint16{tls.VersionTLS13}
	both := []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256, tls.PSSWithSHA256}
	for _, tc := range []struct {
		name string
		chi  tls.ClientHelloInfo
		want x509.PublicKeyAlgorithm
	}{
		{"a client taking both gets ECDSA", tls.ClientHelloInfo{ServerName: "localhost", SupportedVersions: tls13, SignatureSchemes: both}, x509.ECDSA},
		{"a client offering only RSA signatures gets RSA", tls.ClientHelloInfo{ServerName: "localhost", SupportedVersions: tls13, SignatureSchemes: []tls.SignatureScheme{tls.PSSWithSHA256}}, x509.RSA},
		{"a name no certificate has: chosen as if none were sent", tls.ClientHelloInfo{ServerName: "dns.example", SupportedVersions: tls13, SignatureSchemes: both}, x509.ECDSA},
		{"a client no certificate fits gets RSA, the oldest clients' choice", tls.ClientHelloInfo{SupportedVersions: tls13, SignatureSchemes: []tls.SignatureScheme{tls.Ed25519}}, x509.RSA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.GetCertificate(&tc.chi)
			if err != nil {
				t.Fatal(err)
			}
			if c.Leaf.PublicKeyAlgorithm != tc.want {
				t.Errorf("got %v, want %v", c.Leaf.PublicKeyAlgorithm, tc.want)
			}
		})
	}
}

func TestLoadCertsNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	c := testlab.SelfSignedCert(t, dir, "c")
	keys := filepath.Join(dir, "keys")
	os.WriteFile(keys, []byte("# one key\nabc\n"), 0o600)
	_, err := LoadCerts(&config.TLS{Cert: c.CertFile, Key: c.KeyFile, TicketKeyFile: keys}, nil)
	if err == nil || !strings.Contains(err.Error(), keys) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad ticket key file: %v", err)
	}
	_, err = LoadCerts(&config.TLS{Cert: c.CertFile, Key: c.KeyFile, Certs: []config.CertPair{{Cert: c.CertFile, Key: filepath.Join(dir, "none.key")}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "none.key") {
		t.Fatalf("missing second key: %v", err)
	}
}
