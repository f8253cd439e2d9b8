package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminTLS(t *testing.T) {
	t.Run("absent: plain HTTP", func(t *testing.T) {
		cfg, err := Parse("/etc/anyfront/t.yaml", []byte(withPool("admin: {listen: '127.0.0.1:8053'}")))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Admin.TLS != nil {
			t.Errorf("TLS = %+v without a tls key", cfg.Admin.TLS)
		}
	})
	t.Run("relative files are read from the config's directory", func(t *testing.T) {
		cfg, err := Parse("/etc/anyfront/t.yaml", []byte(withPool(
			"admin:",
			"  listen: '127.0.0.1:8443'",
			"  tls: {cert: admin.crt, key: /keys/admin.key}")))
		if err != nil {
			t.Fatal(err)
		}
		got := cfg.Admin.TLS
		if got == nil || got.Cert != filepath.FromSlash("/etc/anyfront/admin.crt") || got.Key != "/keys/admin.key" {
			t.Errorf("TLS = %+v", got)
		}
	})
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no key", withPool("admin:", "  tls: {cert: c}"), "t.yaml:5: admin.tls: key is required"},
		{"empty cert", withPool("admin:", "  tls: {cert: '', key: k}"), "t.yaml:5: admin.tls.cert: must not be empty"},
		{"unknown key", withPool("admin:", "  tls: {cert: c, key: k, ca: x}"), `t.yaml:5: unknown key "ca" in admin.tls`},
		{"not a mapping", withPool("admin:", "  tls: true"), "t.yaml:5: admin.tls"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestAdminTokenFiles(t *testing.T) {
	cfg, err := Parse("/etc/anyfront/t.yaml", []byte(withPool(
		"admin:",
		"  token_file: operate.token",
		"  read_token_file: /secrets/read.token")))
	if err != nil {
		t.Fatal(err)
	}
	a := cfg.Admin
	if a.TokenFile != filepath.FromSlash("/etc/anyfront/operate.token") || a.ReadTokenFile != "/secrets/read.token" {
		t.Errorf("admin = %+v", a)
	}
	if _, err := Parse("t.yaml", []byte(withPool("admin:", "  read_token_file: ''"))); err == nil {
		t.Error("an empty read_token_file was accepted")
	}
}
