package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
)

// maxCACertBytes bounds the -cacert file: a certificate chain is a few KiB;
// a path pointing at a device or a log must fail fast.
const maxCACertBytes = 1 << 20

// clientTLS builds the TLS settings for an https:// admin URL: the system's
// roots, or only -cacert's certificates when given, or no verification with
// -insecure. On an http:// URL either flag is a mistake worth stopping for:
// the operator believes the token is protected and it is not.
func clientTLS(scheme string, o options) (*tls.Config, error) {
	if scheme != "https" {
		if o.cacert != "" || o.insecure {
			return nil, fmt.Errorf("-cacert and -insecure are for an https:// admin URL, not %s://", scheme)
		}
		return nil, nil
	}
	if o.cacert != "" && o.insecure {
		return nil, errors.New("-cacert and -insecure: pick one (-insecure would ignore the certificate)")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: o.insecure}
	if o.cacert != "" {
		pool, err := readCACert(o.cacert)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		c.RootCAs = pool
	}
	return c, nil
}

func readCACert(path string) (*x509.CertPool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	pem, err := io.ReadAll(io.LimitReader(f, maxCACertBytes+1))
	if err != nil {
		return nil, err
	}
	if len(pem) > maxCACertBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxCACertBytes)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return pool, nil
}

// tlsHint says what to do about a certificate the client could not verify.
func tlsHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	var host x509.HostnameError
	switch {
	case errors.As(err, &host):
		return " (the certificate does not name this host: use the address it was issued for in -admin)"
	case errors.As(err, &unknown), errors.As(err, &verify):
		return " (pass -cacert FILE with the admin API's certificate or its CA, or -insecure)"
	}
	return ""
}
