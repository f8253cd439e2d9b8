package config

import (
	"strings"
	"testing"
)

func TestPoolECSAndBackendProxyProtocol(t *testing.T) {
	t.Run("keys load with their defaults", func(t *testing.T) {
		cfg, err := Parse("t.yaml", []byte(text(
			"pools:",
			"  default:",
			"    backends:",
			"      - {name: r1, address: '127.0.0.1:5301', proxy_protocol: true}",
			"      - {name: r2, address: '127.0.0.1:5302'}",
			"    ecs: {add: true}",
			"  plain:",
			"    backends: [{name: r3, address: '127.0.0.1:5303'}]",
		)))
		if err != nil {
			t.Fatal(err)
		}
		p := cfg.Pools["default"]
		if !p.Backends[0].ProxyProtocol || p.Backends[1].ProxyProtocol {
			t.Errorf("proxy_protocol: got %v %v, want true false", p.Backends[0].ProxyProtocol, p.Backends[1].ProxyProtocol)
		}
		if want := (ECS{Add: true, V4Prefix: 24, V6Prefix: 56}); p.ECS != want {
			t.Errorf("ecs: got %+v, want %+v", p.ECS, want)
		}
		if cfg.Pools["plain"].ECS != (ECS{}) {
			t.Errorf("a pool without ecs: got %+v, want it off", cfg.Pools["plain"].ECS)
		}
	})
	for _, tc := range []struct {
		name, line, want string
	}{
		{"v4 prefix too long", "    ecs: {add: true, v4_prefix: 33}", "t.yaml:4: pools.default.ecs.v4_prefix: must be between 0 and 32, got 33"},
		{"v6 prefix too long", "    ecs: {add: true, v6_prefix: 129}", "t.yaml:4: pools.default.ecs.v6_prefix: must be between 0 and 128, got 129"},
		{"unknown ecs key", "    ecs: {add: true, scope: 24}", `t.yaml:4: unknown key "scope" in pools.default.ecs`},
		{"add not a boolean", "    ecs: {add: yes please}", "t.yaml:4: pools.default.ecs.add:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(text(
				"pools:",
				"  default:",
				"    backends: [{name: r1, address: '127.0.0.1:5301'}]",
				tc.line,
			)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("proxy_protocol not a boolean", func(t *testing.T) {
		_, err := Parse("t.yaml", []byte(text(
			"pools:",
			"  default:",
			"    backends:",
			"      - {name: r1, address: '127.0.0.1:5301', proxy_protocol: v2}",
		)))
		if err == nil || !strings.Contains(err.Error(), "t.yaml:4: pools.default.backends[0].proxy_protocol:") {
			t.Fatalf("got %v", err)
		}
	})
}
