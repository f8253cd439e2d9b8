package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/admin"
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// newTLSEnv is newEnv with the admin API on HTTPS (admin.tls) using a fresh
// self-signed certificate; it returns the env (url is https://) and the
// certificate.
func newTLSEnv(t *testing.T) (*env, testlab.TestCert) {
	t.Helper()
	dir := t.TempDir()
	cert := testlab.SelfSignedCert(t, dir, "admin")
	cfg, err := config.Parse("t.yaml", []byte(testConfig))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{tokenFile: filepath.Join(dir, "token")}
	if err := os.WriteFile(e.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if e.store, err = state.New(); err != nil {
		t.Fatal(err)
	}
	if err := e.store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	s, err := admin.New(config.Admin{Listen: "127.0.0.1:0", TokenFile: e.tokenFile, TLS: &config.TLS{Cert: cert.CertFile, Key: cert.KeyFile}},
		admin.Deps{Store: e.store, Live: live{}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("admin Run: %v", err)
		}
	})
	<-s.Ready()
	if s.Addr() == nil {
		t.Fatal("admin server did not listen")
	}
	e.url = "https://" + s.Addr().String()
	return e, cert
}

func TestTLS(t *testing.T) {
	e, cert := newTLSEnv(t)
	plain := "http://" + strings.TrimPrefix(e.url, "https://")
	other := testlab.SelfSignedCert(t, t.TempDir(), "other")
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		args    []string
		code    int
		out     string // substring of stdout
		errOut  string // substring of stderr
		drained bool   // the node is drained afterwards
	}{
		{"without -cacert the certificate is not trusted", []string{"-admin", e.url, "backends"},
			exitUnreachable, "", "pass -cacert FILE", false},
		{"-cacert of another certificate is not enough", []string{"-admin", e.url, "-cacert", other.CertFile, "backends"},
			exitUnreachable, "", "certificate signed by unknown authority", false},
		{"plain http to the TLS port says to use https", []string{"-admin", plain, "-token-file", e.tokenFile, "node", "drain"},
			exitFailed, "", "speaks HTTPS (admin.tls): use -admin https://", false},
		{"-cacert reads", []string{"-admin", e.url, "-cacert", cert.CertFile, "-token-file", e.tokenFile, "backends"},
			exitOK, "r1", "", false},
		{"-cacert with the token changes", []string{"-admin", e.url, "-cacert", cert.CertFile, "-token-file", e.tokenFile, "node", "drain"},
			exitOK, "node: drained", "", true},
		{"-insecure skips verification", []string{"-admin", e.url, "-insecure", "-token-file", e.tokenFile, "node", "undrain"},
			exitOK, "node: in service", "", false},
		{"a wrong token over TLS is refused", []string{"-admin", e.url, "-cacert", cert.CertFile, "-token-file", wrong, "node", "drain"},
			exitFailed, "", "unauthorized", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := runCLI(tt.args...)
			if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errOut, tt.errOut) {
				t.Errorf("code %d (want %d)\nstdout %q\nstderr %q", code, tt.code, out, errOut)
			}
			if strings.Contains(out+errOut, token) {
				t.Error("the token was printed")
			}
			if got := e.store.Node(nil).Drained; got != tt.drained {
				t.Errorf("node drained = %v, want %v", got, tt.drained)
			}
		})
	}
	t.Run("env ANYFRONT_CACERT", func(t *testing.T) {
		t.Setenv("ANYFRONT_CACERT", cert.CertFile)
		if code, out, errOut := runCLI("-admin", e.url, "-token-file", e.tokenFile, "backends"); code != exitOK {
			t.Errorf("code %d: %q %q", code, out, errOut)
		}
	})
}

func TestTLSFlagMistakes(t *testing.T) {
	cert := testlab.SelfSignedCert(t, t.TempDir(), "c")
	notPEM := filepath.Join(t.TempDir(), "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		msg  string
	}{
		{"-cacert on an http URL", []string{"-admin", "http://127.0.0.1:1", "-cacert", cert.CertFile, "backends"}, "are for an https:// admin URL"},
		{"-insecure on an http URL", []string{"-admin", "http://127.0.0.1:1", "-insecure", "backends"}, "are for an https:// admin URL"},
		{"both", []string{"-admin", "https://127.0.0.1:1", "-insecure", "-cacert", cert.CertFile, "backends"}, "pick one"},
		{"a missing file", []string{"-admin", "https://127.0.0.1:1", "-cacert", "/nonexistent.pem", "backends"}, "-cacert: open /nonexistent.pem"},
		{"a file without a certificate", []string{"-admin", "https://127.0.0.1:1", "-cacert", notPEM, "backends"}, "no PEM certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(tt.args...)
			if code != exitUsage || !strings.Contains(errOut, tt.msg) {
				t.Errorf("code %d, stderr %q", code, errOut)
			}
		})
	}
}
