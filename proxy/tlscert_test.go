package proxy

import (
	"crypto/x509"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

// writeTestCert writes a fresh self-signed certificate for 127.0.0.1, ::1
// and localhost into dir and returns its files and a pool trusting it.
func writeTestCert(t testing.TB, dir, name string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := testlab.SelfSignedCert(t, dir, name)
	return c.CertFile, c.KeyFile, c.Pool
}
