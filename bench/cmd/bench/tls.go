package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

// Settings of the encrypted listeners, the same in both proxies.
const (
	// tlsInflightPerConn is anyfront's default max_inflight_per_conn,
	// spelled out, and dnsdist's maxInFlight set to match: without it
	// dnsdist 1.7 answers one query per connection at a time.
	tlsInflightPerConn = 100
	// tlsQueriesPerConn is anyfront's default max_queries_per_conn, and
	// dnsdist's setMaxTCPQueriesPerConnection set to match (its default
	// is no limit), so both make clients reconnect equally often.
	tlsQueriesPerConn = 10000
	// dohPath is where both proxies answer DoH, and dnsperf's default.
	dohPath = "/dns-query"
	// tlsProbeTimeout bounds the one query sent over the encrypted
	// listener once the proxy forwards plain DNS.
	tlsProbeTimeout = 2 * time.Second
)

// tlsCert is the certificate both proxies serve, made once per run.
type tlsCert struct{ cert, key string }

// makeCert writes a fresh self-signed ECDSA P-256 certificate for
// 127.0.0.1 and localhost into dir. ECDSA, as most DoT and DoH services
// deploy, keeps the handshakes cheap; dnsperf does not verify it.
func makeCert(dir string) (tlsCert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tlsCert{}, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return tlsCert{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "anyfront bench"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tlsCert{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tlsCert{}, err
	}
	c := tlsCert{cert: filepath.Join(dir, "bench.crt"), key: filepath.Join(dir, "bench.key")}
	if err := os.WriteFile(c.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return tlsCert{}, err
	}
	if err := os.WriteFile(c.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return tlsCert{}, err
	}
	return c, nil
}

// dnsdistTLS returns dnsdist's lines for the encrypted listener of wl on
// port, and the out-of-order setting for its backends.
func dnsdistTLS(wl workload, port int, c tlsCert) []string {
	lines := []string{fmt.Sprintf("setMaxTCPQueriesPerConnection(%d)", tlsQueriesPerConn)}
	switch wl.transport {
	case "dot":
		lines = append(lines, fmt.Sprintf(`addTLSLocal("127.0.0.1:%d", %q, %q, {maxInFlight=%d})`,
			port, c.cert, c.key, tlsInflightPerConn))
	case "doh":
		lines = append(lines, fmt.Sprintf(`addDOHLocal("127.0.0.1:%d", %q, %q, %q)`,
			port, c.cert, c.key, dohPath))
	}
	return lines
}

// anyfrontTLS returns anyfront's listen entry for the encrypted listener
// of wl on port, and its proxy.tcp section.
func anyfrontTLS(wl workload, port int, c tlsCert) (listen, proxy string) {
	listen = fmt.Sprintf(`  - {address: "127.0.0.1:%d", protocol: %s, tls: {cert: %q, key: %q}}`,
		port, wl.transport, c.cert, c.key)
	proxy = fmt.Sprintf("proxy: {tcp: {max_inflight_per_conn: %d, max_queries_per_conn: %d}}",
		tlsInflightPerConn, tlsQueriesPerConn)
	return listen, proxy
}

// probeTLS sends one never-seen name over the encrypted listener at addr
// and wants NOERROR: the listener is up and wired to the backends.
func probeTLS(ctx context.Context, wl workload, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, tlsProbeTimeout)
	defer cancel()
	q := new(dns.Msg).SetQuestion(fmt.Sprintf("tls-ready-%d.%s", time.Now().UnixNano(), testlab.RandZone), dns.TypeA)
	// The harness made the certificate itself; it checks the transport,
	// not the chain of trust.
	cfg := &tls.Config{InsecureSkipVerify: true}
	var r *dns.Msg
	switch wl.transport {
	case "dot":
		c := &dns.Client{Net: "tcp-tls", TLSConfig: cfg, Timeout: tlsProbeTimeout}
		var err error
		if r, _, err = c.ExchangeContext(ctx, q, addr); err != nil {
			return fmt.Errorf("DoT probe: %w", err)
		}
	case "doh":
		var err error
		if r, err = dohGet(ctx, cfg, addr, q); err != nil {
			return fmt.Errorf("DoH probe: %w", err)
		}
	case "doq":
		q.Id = 0
		b, err := q.Pack()
		if err != nil {
			return err
		}
		conn, err := quic.DialAddr(ctx, addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"doq"}}, nil)
		if err != nil {
			return fmt.Errorf("DoQ probe: %w", err)
		}
		defer conn.CloseWithError(0, "")
		if o, err := doqExchange(ctx, conn, b); o != genAnswered {
			return fmt.Errorf("DoQ probe: %v", err)
		}
		r = new(dns.Msg) // doqExchange checked it answers q
	default:
		return fmt.Errorf("no probe for transport %q", wl.transport)
	}
	if r.Rcode != dns.RcodeSuccess {
		return fmt.Errorf("%s probe answered %s", wl.transport, dns.RcodeToString[r.Rcode])
	}
	return nil
}

// dohGet asks q over HTTP/2 with GET, as dnsperf does.
func dohGet(ctx context.Context, cfg *tls.Config, addr string, q *dns.Msg) (*dns.Msg, error) {
	q.Id = 0 // RFC 8484 4.1: ID 0 keeps GET answers cacheable
	b, err := q.Pack()
	if err != nil {
		return nil, err
	}
	u := "https://" + addr + dohPath + "?dns=" + base64.RawURLEncoding.EncodeToString(b)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/dns-message")
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if resp.ProtoMajor != 2 {
		return nil, fmt.Errorf("served over %s, want HTTP/2 (dnsperf speaks only that)", resp.Proto)
	}
	r := new(dns.Msg)
	if err := r.Unpack(body); err != nil {
		return nil, err
	}
	return r, nil
}
