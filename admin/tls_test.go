package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// lockedBuffer collects log output written from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startTLS runs a server with admin.tls set, logging at Debug into logs
// (net/http's own messages, TLS handshake errors among them, go there too).
func startTLS(t *testing.T, cert testlab.TestCert, tokenFile string, store *state.Store, logs io.Writer) (*Server, string, config.Admin) {
	t.Helper()
	cfg := config.Admin{Listen: "127.0.0.1:0", TokenFile: tokenFile, TLS: &config.TLS{Cert: cert.CertFile, Key: cert.KeyFile}}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, Deps{Store: store, Log: log, Reload: func() ([]string, error) { return nil, nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	<-s.Ready()
	if s.Addr() == nil {
		t.Fatalf("Run failed to listen: %v", <-done)
	}
	return s, s.Addr().String(), cfg
}

// httpsDo sends one request over HTTPS trusting pool (nil: the system's
// roots, which do not know the test's certificate) and returns the
// answer and the fingerprint of the certificate the server presented.
func httpsDo(pool *x509.CertPool, method, url, token string) (int, string, [32]byte, error) {
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		return 0, "", [32]byte{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return 0, "", [32]byte{}, err
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	var fp [32]byte
	if res.TLS != nil && len(res.TLS.PeerCertificates) > 0 {
		fp = sha256.Sum256(res.TLS.PeerCertificates[0].Raw)
	}
	return res.StatusCode, string(body), fp, nil
}

func TestTLS(t *testing.T) {
	cert := testlab.SelfSignedCert(t, t.TempDir(), "admin")
	store := newStore(t)
	logs := &lockedBuffer{}
	_, addr, _ := startTLS(t, cert, writeToken(t, testToken), store, logs)

	t.Run("plain http to the TLS port gets no API", func(t *testing.T) {
		// The token goes along: it must not drain and must not be logged.
		res := do(t, "POST", "http://"+addr+"/api/v1/node/drain", testToken, "")
		if res.code != http.StatusBadRequest || !strings.Contains(string(res.body), "HTTPS") {
			t.Errorf("plain http: %d %q, want net/http's 400 for HTTP to an HTTPS server", res.code, res.body)
		}
		if store.Node(nil).Drained {
			t.Error("a plain-http call drained the node")
		}
	})
	t.Run("a client that does not trust the certificate fails the handshake", func(t *testing.T) {
		_, _, _, err := httpsDo(nil, "GET", "https://"+addr+"/healthz", "")
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("err = %v, want an unknown-authority error", err)
		}
	})
	t.Run("reads need a token", func(t *testing.T) {
		if code, _, _, err := httpsDo(cert.Pool, "GET", "https://"+addr+"/api/v1/backends", ""); err != nil || code != 401 {
			t.Fatalf("no token: %v %d", err, code)
		}
		code, body, fp, err := httpsDo(cert.Pool, "GET", "https://"+addr+"/api/v1/backends", testToken)
		if err != nil || code != 200 || !strings.Contains(body, `"r1"`) {
			t.Fatalf("%v %d %s", err, code, body)
		}
		if fp != cert.SHA256 {
			t.Error("the server presented another certificate")
		}
	})
	t.Run("mutating calls need the token", func(t *testing.T) {
		if code, body, _, err := httpsDo(cert.Pool, "POST", "https://"+addr+"/api/v1/node/drain", "wrong"); err != nil || code != 401 {
			t.Fatalf("wrong token: %v %d %s", err, code, body)
		}
		if store.Node(nil).Drained {
			t.Fatal("a wrong token drained the node")
		}
		if code, body, _, err := httpsDo(cert.Pool, "POST", "https://"+addr+"/api/v1/node/drain", testToken); err != nil || code != 200 {
			t.Fatalf("right token: %v %d %s", err, code, body)
		}
		if !store.Node(nil).Drained {
			t.Error("the node is not drained after a 200")
		}
	})
	t.Run("the token is never logged", func(t *testing.T) {
		l := logs.String()
		if strings.Contains(l, testToken) {
			t.Errorf("the token is in the log:\n%s", l)
		}
		// The log did see the calls: the check above looked at something.
		if !strings.Contains(l, "result=refused") || !strings.Contains(l, "tls=true") {
			t.Errorf("the log lacks the refusal or the listener line:\n%s", l)
		}
	})
}

func TestTLSReload(t *testing.T) {
	dir := t.TempDir()
	first := testlab.SelfSignedCert(t, dir, "admin")
	logs := &lockedBuffer{}
	s, addr, cfg := startTLS(t, first, "", newStore(t), logs)
	url := "https://" + addr + "/healthz"
	served := func(t *testing.T, pool *x509.CertPool) [32]byte {
		t.Helper()
		code, body, fp, err := httpsDo(pool, "GET", url, "")
		if err != nil || code != 200 {
			t.Fatalf("healthz over https: %v %d %s", err, code, body)
		}
		return fp
	}

	t.Run("a bad certificate on reload keeps the old one", func(t *testing.T) {
		if err := os.WriteFile(first.CertFile, []byte("not a certificate\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := s.Reload(cfg)
		if err == nil || !strings.Contains(err.Error(), "admin.tls") || !strings.Contains(err.Error(), first.CertFile) {
			t.Fatalf("Reload = %v, want an admin.tls error naming the file", err)
		}
		if fp := served(t, first.Pool); fp != first.SHA256 {
			t.Error("the old certificate is no longer served")
		}
	})
	t.Run("a missing key file keeps the old one", func(t *testing.T) {
		bad := cfg
		bad.TLS = &config.TLS{Cert: first.CertFile, Key: dir + "/missing.key"}
		if err := s.Reload(bad); err == nil || !strings.Contains(err.Error(), "missing.key") {
			t.Fatalf("Reload = %v", err)
		}
		if fp := served(t, first.Pool); fp != first.SHA256 {
			t.Error("the old certificate is no longer served")
		}
	})
	t.Run("a good certificate on reload is served at once", func(t *testing.T) {
		second := testlab.SelfSignedCert(t, dir, "admin")
		if err := s.Reload(cfg); err != nil {
			t.Fatal(err)
		}
		if fp := served(t, second.Pool); fp != second.SHA256 {
			t.Error("the new certificate is not served")
		}
		if _, _, _, err := httpsDo(first.Pool, "GET", url, ""); err == nil {
			t.Error("a client trusting only the old certificate still got through")
		}
	})
	t.Run("turning TLS off needs a restart and keeps HTTPS", func(t *testing.T) {
		if err := s.Reload(config.Admin{Listen: cfg.Listen}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "admin.tls added or removed: restart anyfront") {
			t.Error("no restart warning logged")
		}
		if res := do(t, "GET", "http://"+addr+"/healthz", "", ""); res.code != http.StatusBadRequest {
			t.Errorf("plain http after the reload: %d", res.code)
		}
	})
}

func TestNewRefusesABadCertificate(t *testing.T) {
	cert := testlab.SelfSignedCert(t, t.TempDir(), "admin")
	// Key material must never be echoed in an error.
	const secret = "PRIVATE-KEY-MATERIAL-0123456789"
	if err := os.WriteFile(cert.KeyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(config.Admin{Listen: "127.0.0.1:0", TLS: &config.TLS{Cert: cert.CertFile, Key: cert.KeyFile}},
		Deps{Store: newStore(t), Log: quietLog()})
	if err == nil || !strings.Contains(err.Error(), "admin.tls") || !strings.Contains(err.Error(), cert.KeyFile) {
		t.Fatalf("New = %v, want an admin.tls error naming the key file", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("the error echoes the key file's contents: %v", err)
	}
}
