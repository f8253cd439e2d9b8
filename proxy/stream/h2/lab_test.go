package h2

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"golang.org/x/net/http2"
)

// echo answers a query with itself, QR set: a valid DNS reply for kdig.
type echo struct{}

func (echo) ServeDNS(r *Request) {
	ans := append([]byte(nil), r.Query...)
	if len(ans) > 2 {
		ans[2] |= 0x80
	}
	r.Respond(200, ans, 300)
}

// held keeps every request until the test releases it.
type held struct {
	mu   sync.Mutex
	reqs []*Request
	got  chan struct{}
}

func newHeld() *held { return &held{got: make(chan struct{}, 1000)} }

func (h *held) ServeDNS(r *Request) {
	h.mu.Lock()
	h.reqs = append(h.reqs, r)
	h.mu.Unlock()
	h.got <- struct{}{}
}

// wait blocks until n requests arrived.
func (h *held) wait(t *testing.T, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		select {
		case <-h.got:
		case <-time.After(5 * time.Second):
			t.Fatalf("handler got %d requests, want %d", i, n)
		}
	}
}

// release answers every held request with its own query.
func (h *held) release() {
	h.mu.Lock()
	reqs := h.reqs
	h.reqs = nil
	h.mu.Unlock()
	for _, r := range reqs {
		r.Respond(200, r.Query, 1)
	}
}

// labInline makes the labs started while it is set hand the server
// connections that say their writes never wait, so answers are written by
// the goroutine that responds (Flush) instead of the writer goroutine.
// Loopback writes to a client that reads do not wait in practice; the
// token between the two writers is what the tests run under it check.
var labInline bool

type inlineConn struct{ *tls.Conn }

func (inlineConn) WritesNeverWait() bool { return true }

// lab is a DoH server on loopback TLS with a self-signed certificate.
type lab struct {
	srv  *Server
	addr string
	pool *x509.CertPool
	// caFile is the certificate's PEM file, for curl and kdig.
	caFile string
	errs   chan error
}

func startLab(t testing.TB, cfg Config, h Handler) *lab {
	t.Helper()
	srv, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	cert := testlab.SelfSignedCert(t, t.TempDir(), "doh")
	kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lab{srv: srv, addr: ln.Addr().String(), pool: cert.Pool, caFile: cert.CertFile, errs: make(chan error, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	tcfg := &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: []string{"h2"}}
	inline := labInline
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc := tls.Server(c, tcfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return
				}
				var nc net.Conn = tc
				if inline {
					nc = inlineConn{tc}
				}
				if err := srv.ServeConn(ctx, nc); err != nil {
					select {
					case l.errs <- err:
					default:
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		wg.Wait()
	})
	return l
}

// client is an HTTP/2 client from golang.org/x/net/http2 on one connection
// to the lab (a ClientConn: the Transport's pool with
// StrictMaxConcurrentStreams can deadlock when more requests wait than the
// server allows streams, counting reserved ones against the limit).
func (l *lab) client(t testing.TB) *http.Client {
	t.Helper()
	tc, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: l.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	// Strict: requests beyond the server's limit wait for a stream.
	cc, err := (&http2.Transport{StrictMaxConcurrentStreams: true}).NewClientConn(tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return &http.Client{Transport: cc, Timeout: 10 * time.Second}
}

// pooled is the Transport's usual pool: new connections as needed.
func (l *lab) pooled(t testing.TB) *http.Client {
	tr := &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: l.pool, ServerName: "localhost"}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (l *lab) url(path string) string { return "https://" + l.addr + path }

// query is a DNS query for example.com. A with ID id.
func query(id uint16) []byte {
	return append([]byte{byte(id >> 8), byte(id), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0},
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
