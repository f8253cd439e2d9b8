package config

import (
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestListenTransportKeys(t *testing.T) {
	t.Run("doh path defaults to /dns-query and can be set", func(t *testing.T) {
		cfg, err := Parse("t.yaml", []byte(withPool("listen:",
			"  - {address: '127.0.0.1:443', protocol: doh, tls: {cert: c, key: k}}",
			"  - {address: '127.0.0.1:8443', protocol: doh, path: /q, tls: {cert: c, key: k}}",
			"  - {address: '127.0.0.1:853', protocol: dot, tls: {cert: c, key: k}}")))
		if err != nil {
			t.Fatal(err)
		}
		if got := []string{cfg.Listen[0].Path, cfg.Listen[1].Path, cfg.Listen[2].Path}; !slices.Equal(got, []string{"/dns-query", "/q", ""}) {
			t.Errorf("paths %q", got)
		}
	})
	t.Run("proxy protocol with its trusted sources", func(t *testing.T) {
		cfg, err := Parse("t.yaml", []byte(withPool("listen:",
			"  - {address: '127.0.0.1:53', proxy_protocol: true, proxy_protocol_from: ['10.0.0.0/8', '192.0.2.1']}",
			"  - {address: '127.0.0.1:853', protocol: dot, proxy_protocol: true, proxy_protocol_from: ['10.0.0.1/8'], tls: {cert: c, key: k}}")))
		if err != nil {
			t.Fatal(err)
		}
		l := cfg.Listen[0]
		want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}
		if !l.ProxyProtocol || !slices.Equal(l.ProxyProtocolFrom, want) {
			t.Errorf("listen[0] = %+v", l)
		}
		if !cfg.Listen[1].ProxyProtocol || cfg.Listen[1].ProxyProtocolFrom[0] != netip.MustParsePrefix("10.0.0.0/8") {
			t.Errorf("listen[1] = %+v", cfg.Listen[1])
		}
	})
	errs := []struct {
		name string
		yaml string
		want string
	}{
		{"path on dot", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: dot, path: /x, tls: {cert: c, key: k}}"),
			"t.yaml:5: listen[0].path: path is only used by doh"},
		{"relative path", withPool("listen:", "  - {address: '127.0.0.1:443', protocol: doh, path: dns-query, tls: {cert: c, key: k}}"),
			`t.yaml:5: listen[0].path: expected an absolute URL path like /dns-query, got "dns-query"`},
		{"path with a query", withPool("listen:", "  - {address: '127.0.0.1:443', protocol: doh, path: '/q?x=1', tls: {cert: c, key: k}}"),
			`t.yaml:5: listen[0].path: expected an absolute URL path like /dns-query, got "/q?x=1"`},
		{"proxy protocol without trusted sources", withPool("listen:", "  - {address: '127.0.0.1:53', proxy_protocol: true}"),
			"t.yaml:5: listen[0].proxy_protocol: needs proxy_protocol_from: [CIDR, ...], the load balancers allowed to send the header"},
		{"proxy protocol with an empty list", withPool("listen:", "  - {address: '127.0.0.1:53', proxy_protocol: true, proxy_protocol_from: []}"),
			"t.yaml:5: listen[0].proxy_protocol_from: needs at least one CIDR"},
		{"trusted sources without proxy protocol", withPool("listen:", "  - {address: '127.0.0.1:53', proxy_protocol_from: ['10.0.0.0/8']}"),
			"t.yaml:5: listen[0].proxy_protocol_from: only used with proxy_protocol: true"},
		{"proxy protocol on doq", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: doq, proxy_protocol: true, proxy_protocol_from: ['10.0.0.0/8'], tls: {cert: c, key: k}}"),
			"t.yaml:5: listen[0].proxy_protocol: PROXY protocol is only served on stream transports (do53's TCP side, dot, doh), not doq"},
		{"proxy protocol not a bool", withPool("listen:", "  - {address: '127.0.0.1:53', proxy_protocol: yes please, proxy_protocol_from: ['10.0.0.0/8']}"),
			"t.yaml:5: listen[0].proxy_protocol: expected true or false"},
	}
	for _, tc := range errs {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error %q, got %v", tc.want, err)
			}
		})
	}
}

// TestTransportsDocExamplesLoad keeps docs/transports.md's examples loadable.
func TestTransportsDocExamplesLoad(t *testing.T) {
	md, err := os.ReadFile("../docs/transports.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(string(md))
	if len(blocks) < 2 {
		t.Fatalf("found %d yaml blocks", len(blocks))
	}
	for _, b := range blocks {
		if _, err := Parse("../docs/transports.md", []byte(b)); err != nil {
			t.Errorf("a yaml example does not load:\n%v", err)
		}
	}
}
