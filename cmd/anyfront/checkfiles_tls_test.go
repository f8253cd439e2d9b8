package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestCheckChecksTheTLSFiles: -check loads a listener's extra certificates
// and its ticket key file as the daemon will, naming the file and line and
// never a key.
func TestCheckChecksTheTLSFiles(t *testing.T) {
	dir := t.TempDir()
	a := testlab.SelfSignedCert(t, dir, "a")
	good := filepath.Join(dir, "good.keys")
	bad := filepath.Join(dir, "bad.keys")
	os.WriteFile(good, []byte(strings.Repeat("ab", 32)+"\n"), 0o600)
	os.WriteFile(bad, []byte(strings.Repeat("ab", 32)+"\nSECRETSHORT\n"), 0o600)
	missing := filepath.Join(dir, "missing")
	pool := "pools:\n  default:\n    backends:\n      - {name: r1, address: \"127.0.0.1:5301\"}\n"
	dot := func(tls string) string {
		return "listen:\n  - address: \"127.0.0.1:8853\"\n    protocol: dot\n    tls: " + tls + "\n" + pool
	}
	for _, tt := range []struct{ name, body, want string }{
		{"all good", dot(fmt.Sprintf("{cert: %q, key: %q, certs: [{cert: %q, key: %q}], ticket_key_file: %q}", a.CertFile, a.KeyFile, a.CertFile, a.KeyFile, good)), ""},
		{"bad ticket key file", dot(fmt.Sprintf("{cert: %q, key: %q, ticket_key_file: %q}", a.CertFile, a.KeyFile, bad)),
			":4: listen[0].tls.ticket_key_file " + bad + ": line 2: want a 32-byte key"},
		{"missing ticket key file", dot(fmt.Sprintf("{cert: %q, key: %q, ticket_key_file: %q}", a.CertFile, a.KeyFile, missing)),
			":4: listen[0].tls.ticket_key_file: stat " + missing},
		{"missing second key", dot(fmt.Sprintf("{cert: %q, key: %q, certs: [{cert: %q, key: %q}]}", a.CertFile, a.KeyFile, a.CertFile, missing)),
			":4: listen[0].tls.certs[0]: key " + missing + ": no such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			os.WriteFile(cfg, []byte(tt.body), 0o600)
			code, out := runCheck(t, cfg)
			if tt.want == "" {
				if code != 0 {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				return
			}
			if code != 1 || !strings.HasPrefix(strings.TrimSpace(out), cfg+tt.want) || strings.Contains(out, "SECRETSHORT") {
				t.Fatalf("exit %d, want %q:\n%s", code, cfg+tt.want, out)
			}
		})
	}
}
