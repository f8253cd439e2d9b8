package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestListenTLSKeys(t *testing.T) {
	t.Run("more certificates and a ticket key file, relative to the config", func(t *testing.T) {
		cfg, err := Parse("/etc/anyfront/t.yaml", []byte(withPool("listen:",
			"  - address: '127.0.0.1:853'",
			"    protocol: dot",
			"    tls:",
			"      cert: ec.crt",
			"      key: ec.key",
			"      certs: [{cert: rsa.crt, key: rsa.key}]",
			"      ticket_key_file: /run/anyfront/tickets")))
		if err != nil {
			t.Fatal(err)
		}
		tl := cfg.Listen[0].TLS
		pairs := tl.Pairs()
		if len(pairs) != 2 || pairs[0].Cert != "/etc/anyfront/ec.crt" || pairs[1].Cert != "/etc/anyfront/rsa.crt" || pairs[1].Key != "/etc/anyfront/rsa.key" {
			t.Errorf("pairs %+v", pairs)
		}
		if tl.TicketKeyFile != filepath.Clean("/run/anyfront/tickets") {
			t.Errorf("ticket_key_file %q", tl.TicketKeyFile)
		}
	})
	t.Run("without them: one pair, Go's own ticket keys", func(t *testing.T) {
		cfg, err := Parse("t.yaml", []byte(withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k}}")))
		if err != nil {
			t.Fatal(err)
		}
		if tl := cfg.Listen[0].TLS; len(tl.Pairs()) != 1 || tl.TicketKeyFile != "" {
			t.Errorf("tls %+v", tl)
		}
	})
	nine := strings.Repeat("{cert: c, key: k}, ", 7) + "{cert: c, key: k}"
	for _, tc := range []struct{ name, yaml, want string }{
		{"a pair without its key", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k, certs: [{cert: r}]}}"),
			"t.yaml:5: listen[0].tls.certs[0]: key is required"},
		{"an unknown key in a pair", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k, certs: [{cert: r, key: r, chain: x}]}}"),
			`t.yaml:5: unknown key "chain" in listen[0].tls.certs[0]`},
		{"certs not a list", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k, certs: {cert: r, key: r}}}"),
			"t.yaml:5: listen[0].tls.certs"},
		{"too many certificates", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k, certs: ["+nine+"]}}"),
			"t.yaml:5: listen[0].tls.certs: at most 8 certificates per listener, cert/key included"},
		{"an empty ticket key file name", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k, ticket_key_file: ''}}"),
			"t.yaml:5: listen[0].tls.ticket_key_file: must not be empty"},
		{"ticket keys on the admin API", withPool("admin:", "  listen: '127.0.0.1:8053'", "  tls: {cert: c, key: k, ticket_key_file: t}"),
			`unknown key "ticket_key_file" in admin.tls`},
		{"more certificates on the admin API", withPool("admin:", "  listen: '127.0.0.1:8053'", "  tls: {cert: c, key: k, certs: []}"),
			`unknown key "certs" in admin.tls`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error %q, got %v", tc.want, err)
			}
		})
	}
}
