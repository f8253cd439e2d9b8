package proxy

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// tlsNode is one proxy, a "node" of a fleet, with a dot, doh and doq
// listener sharing one tls: mapping, in front of a real unbound.
type tlsNode struct {
	*lab
	dot, doh, doq string
}

func startTLSNode(t testing.TB, addrs addrPicker, backend *testlab.Unbound, tlsYAML string) *tlsNode {
	t.Helper()
	n := &tlsNode{dot: addrs.free(t), doh: addrs.free(t), doq: addrs.free(t)}
	addr := addrs.free(t)
	yml := fmt.Sprintf(`listen:
  - {address: %q}
  - {address: %q, protocol: dot, tls: %s}
  - {address: %q, protocol: doh, tls: %s}
  - {address: %q, protocol: doq, tls: %s}
pools:
  default:
    backends: [{name: r1, address: %q}]
`, addr, n.dot, tlsYAML, n.doh, tlsYAML, n.doq, tlsYAML, backend.Addr.String())
	n.lab = runConfig(t, addr, yml)
	return n
}

// handshakes are the node's full and resumed handshakes on proto.
func (n *tlsNode) handshakes(proto string) (full, resumed uint64) {
	c := n.p.TransportStats()[proto]
	return c.TLSFull, c.TLSResumed
}

// clientTLS trusts pool and keeps sessions in cache. ServerName is the same
// for every node, as for one anycast service name, so a session from one
// node is offered to the next.
func clientTLS(pool *x509.CertPool, cache tls.ClientSessionCache, alpn ...string) *tls.Config {
	return &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: alpn, ClientSessionCache: cache}
}

// dotQuery opens a DoT connection, asks one query and reads its answer
// (reading is also what takes in the tickets a TLS 1.3 server sends after
// its handshake), and returns the connection's state.
func dotQuery(t testing.TB, addr string, conf *tls.Config) tls.ConnectionState {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("dot %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	dc := &dns.Conn{Conn: c}
	if err := dc.WriteMsg(dnstest.Query("demo.test.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	r, err := dc.ReadMsg()
	if err != nil {
		t.Fatalf("dot %s: %v", addr, err)
	}
	wantA(t, r, "192.0.2.10")
	return c.ConnectionState()
}

// doqSession is dotQuery over QUIC.
func doqSession(t testing.TB, addr string, conf *tls.Config) tls.ConnectionState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, addr, conf, nil)
	if err != nil {
		t.Fatalf("doq %s: %v", addr, err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := dnstest.Query("demo.test.", dns.TypeA)
	m.Id = 0
	b := dnstest.Pack(t, m)
	if _, err := s.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := io.ReadAll(s)
	if err != nil || len(resp) < 2 {
		t.Fatalf("doq answer: %d bytes, %v", len(resp), err)
	}
	wantA(t, dnstest.Unpack(t, resp[2:]), "192.0.2.10")
	return conn.ConnectionState().TLS
}

// oneSession is a client session cache that keeps the first session it is
// given, so the same ticket can be offered again and again (a real cache
// replaces it with each resumption's new ticket).
type oneSession struct {
	mu sync.Mutex
	s  *tls.ClientSessionState
}

func (c *oneSession) Get(string) (*tls.ClientSessionState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s, c.s != nil
}

func (c *oneSession) Put(_ string, s *tls.ClientSessionState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.s == nil && s != nil {
		c.s = s
	}
}

// ticketKey is a fresh random ticket key, in hex.
func ticketKey(t testing.TB) string {
	var k [32]byte
	if _, err := rand.Read(k[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(k[:])
}

// writeKeys replaces path with these lines, whole (write and rename, as an
// operator's tooling should).
func writeKeys(t testing.TB, path string, lines ...string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rsaCert writes a self-signed RSA 2048 certificate for localhost and
// 127.0.0.1 (testlab's are ECDSA) and adds it to pool.
func rsaCert(t testing.TB, dir, name string, pool *x509.CertPool) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "anyfront test rsa " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool.AddCert(parsed)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{certFile, "CERTIFICATE", der}, {keyFile, "PRIVATE KEY", keyDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}
