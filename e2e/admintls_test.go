package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// startTLSNode is startNode with the admin API on HTTPS (admin.tls) and
// debug logging, so that net/http's own messages (TLS handshake errors,
// plain HTTP to the TLS port) are in n.logs too.
func startTLSNode(t *testing.T, cert testlab.TestCert, body string) *node {
	t.Helper()
	dnsPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	adminPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	n := &node{
		t:         t,
		dns:       fmt.Sprintf("127.0.0.1:%d", dnsPort),
		admin:     fmt.Sprintf("https://127.0.0.1:%d", adminPort),
		tokenFile: filepath.Join(dir, "admin.token"),
		token:     fmt.Sprintf("t%d-tls-secret", time.Now().UnixNano()),
		cfgPath:   filepath.Join(dir, "anyfront.yaml"),
		logs:      &syncBuffer{},
		exited:    make(chan error, 1),
	}
	if err := os.WriteFile(n.tokenFile, []byte(n.token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("listen: [{address: %q}]\nadmin: {listen: \"127.0.0.1:%d\", token_file: %q, tls: {cert: %q, key: %q}}\n%s",
		n.dns, adminPort, n.tokenFile, cert.CertFile, cert.KeyFile, body)
	if err := os.WriteFile(n.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.cmd = exec.Command(filepath.Join(binDir, "anyfront"), "-config", n.cfgPath, "-log-level", "debug")
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := testlab.StartCmd(n.cmd); err != nil {
		t.Fatal(err)
	}
	go func() { n.exited <- n.cmd.Wait() }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Kill()
		<-n.exited
		if t.Failed() {
			t.Logf("anyfront logs:\n%s", n.logs.String())
		}
	})
	n.waitFor("the admin API to answer over HTTPS", 10*time.Second, func() bool {
		code, _, _, err := httpsGet(cert.Pool, n.admin+"/healthz")
		return err == nil && code == 200
	})
	return n
}

// httpsGet fetches url trusting only pool and returns the status, body and
// the fingerprint of the certificate the server presented.
func httpsGet(pool *x509.CertPool, url string) (int, string, [32]byte, error) {
	tr := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
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

// TestAdminTLS runs the daemon with admin.tls: anyfrontctl drives it over
// HTTPS with -cacert, plain HTTP to the port gets no API, a broken
// certificate on SIGHUP leaves the old one serving, a renewed one is served
// after the next SIGHUP, and the token never reaches the log.
func TestAdminTLS(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	dir := t.TempDir()
	cert := testlab.SelfSignedCert(t, dir, "admin")
	n := startTLSNode(t, cert, pools(r1))
	plain := "http://" + strings.TrimPrefix(n.admin, "https://")

	t.Run("anyfrontctl over https with -cacert", func(t *testing.T) {
		if out, code := n.ctl("-cacert", cert.CertFile, "drain", "r1"); code != 0 || !strings.Contains(out, "r1: admin drain") {
			t.Fatalf("drain: exit %d: %s", code, out)
		}
		if out, code := n.ctl("-cacert", cert.CertFile, "backends"); code != 0 || !strings.Contains(out, "drain") {
			t.Fatalf("backends: exit %d: %s", code, out)
		}
		if out, code := n.ctl("-cacert", cert.CertFile, "undrain", "r1"); code != 0 {
			t.Fatalf("undrain: exit %d: %s", code, out)
		}
		if out, code := n.ctl("backends"); code != 3 || !strings.Contains(out, "-cacert") {
			t.Errorf("without -cacert: exit %d: %s", code, out)
		}
	})
	t.Run("plain http to the TLS port gets no API", func(t *testing.T) {
		req, _ := http.NewRequest("POST", plain+"/api/v1/backends/r1/drain", nil)
		req.Header.Set("Authorization", "Bearer "+n.token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("plain http: %d, want 400", res.StatusCode)
		}
		if out, _ := n.ctl("-cacert", cert.CertFile, "backends"); strings.Contains(out, "drain") {
			t.Errorf("a plain-http call drained r1:\n%s", out)
		}
	})
	served := func(t *testing.T, pool *x509.CertPool) [32]byte {
		t.Helper()
		code, body, fp, err := httpsGet(pool, n.admin+"/healthz")
		if err != nil || code != 200 {
			t.Fatalf("healthz over https: %v %d %s", err, code, body)
		}
		return fp
	}
	sighup := func(t *testing.T, logLine string) {
		t.Helper()
		before := strings.Count(n.logs.String(), logLine)
		if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		n.waitFor(fmt.Sprintf("%q after SIGHUP", logLine), 5*time.Second, func() bool {
			return strings.Count(n.logs.String(), logLine) > before
		})
	}
	t.Run("a broken certificate on SIGHUP keeps the old one", func(t *testing.T) {
		if err := os.WriteFile(cert.CertFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		// The reload is refused whole (the pair is checked before anything
		// applies), so the old certificate and config stay.
		sighup(t, "reload rejected")
		if !strings.Contains(n.logs.String(), "admin.tls: cert ") {
			t.Error("the rejection does not name admin.tls")
		}
		if fp := served(t, cert.Pool); fp != cert.SHA256 {
			t.Error("the old certificate is no longer served")
		}
	})
	t.Run("a renewed certificate is served after SIGHUP", func(t *testing.T) {
		renewed := testlab.SelfSignedCert(t, dir, "admin")
		sighup(t, "admin tls certificate loaded")
		if fp := served(t, renewed.Pool); fp != renewed.SHA256 {
			t.Error("the renewed certificate is not served")
		}
		if out, code := n.ctl("-cacert", renewed.CertFile, "backends"); code != 0 {
			t.Errorf("anyfrontctl with the renewed certificate: exit %d: %s", code, out)
		}
	})
	t.Run("the token is never logged", func(t *testing.T) {
		l := n.logs.String()
		if strings.Contains(l, n.token) {
			t.Errorf("the token is in the daemon's log")
		}
		if !strings.Contains(l, "tls=true") {
			t.Errorf("the log lacks the HTTPS listener line:\n%s", l)
		}
	})
}
