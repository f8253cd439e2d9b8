package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// text joins lines with newlines, so a case's line N is its Nth argument
// and expected line numbers can be checked by counting.
func text(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// pool is a valid one-pool section to put after the lines a case is about.
var pool = []string{
	"pools:",
	"  default:",
	"    backends: [{name: r1, address: '127.0.0.1:5301'}]",
}

// withPool is text with the valid pool section prepended: lines 1-3 are the
// pool, the case's own lines start at 4.
func withPool(lines ...string) string { return text(append(slices.Clone(pool), lines...)...) }

func TestParseReportsEveryProblemWithItsLine(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key in a pool names its path", text(
			"pools:",
			"  default:",
			"    foo: 1",
			"    backends: [{name: r1, address: '127.0.0.1:5301'}]",
		), []string{`t.yaml:3: unknown key "foo" in pools.default`}},
		{"unknown top-level key", withPool("lsten: []"),
			[]string{`t.yaml:4: unknown key "lsten" at top level`}},
		{"duplicate key", withPool("proxy: {retries: 1, retries: 2}"),
			[]string{`t.yaml:4: duplicate key "retries" in proxy (first at line 4)`}},
		{"mapping where a list belongs", withPool("listen: {address: '127.0.0.1:53'}"),
			[]string{`t.yaml:4: listen: expected a list, got a mapping`}},
		{"YAML syntax error", text("pools:", "  default:", "    backends: [", ""),
			[]string{`t.yaml:4: invalid YAML: did not find expected node content`}},
		{"a second YAML document", withPool("---", "acl: []"),
			[]string{`t.yaml:4: only one YAML document is allowed; remove the second "---"`}},
		{"empty file has no pools", "",
			[]string{`t.yaml:1: pools: at least one pool is required`}},

		{"duration without a unit", withPool("proxy:", "  timeout: 5"),
			[]string{`t.yaml:5: proxy.timeout: expected a duration like 500ms, got "5"`}},
		{"max_inflight above what 16-bit IDs allow", withPool("proxy: {max_inflight: 70000}"),
			[]string{`t.yaml:4: proxy.max_inflight: must be between 1 and 60000, got 70000`}},
		{"negative workers", withPool("proxy: {workers: -1}"),
			[]string{`t.yaml:4: proxy.workers: must be at least 0, got -1`}},
		{"zero TCP bound", withPool("proxy:", "  tcp: {max_conns: 0}"),
			[]string{`t.yaml:5: proxy.tcp.max_conns: must be at least 1, got 0`}},

		{"listen address without port", withPool("listen: [{address: '127.0.0.1'}]"),
			[]string{`t.yaml:4: listen[0].address: "127.0.0.1" needs a port (IP:port, IPv6 in brackets like [2001:db8::1]:53)`}},
		{"listen address that is a host name", withPool("listen: [{address: 'localhost:53'}]"),
			[]string{`t.yaml:4: listen[0].address: expected IP:port (IPv6 in brackets like [2001:db8::1]:53), got "localhost:53"`}},
		{"unknown protocol", withPool("listen:", "  - {address: '127.0.0.1:53', protocol: quic}"),
			[]string{`t.yaml:5: listen[0].protocol: unknown protocol "quic" (valid: do53, dot, doh, doq)`}},
		{"dot without tls", withPool("listen:", "  - address: '127.0.0.1:853'", "    protocol: dot"),
			[]string{`t.yaml:5: listen[0]: protocol dot needs tls: {cert, key}`}},
		{"tls without key", withPool("listen:", "  - {address: '127.0.0.1:853', protocol: doh, tls: {cert: c.pem}}"),
			[]string{`t.yaml:5: listen[0].tls: key is required`}},
		{"tls on do53", withPool("listen:", "  - {address: '127.0.0.1:53', tls: {cert: c, key: k}}"),
			[]string{`t.yaml:5: listen[0].tls: tls is only used by dot, doh and doq`}},
		{"duplicate listen address", withPool("listen:", "  - {address: '127.0.0.1:53'}", "  - {address: '127.0.0.1:53', protocol: doq, tls: {cert: c, key: k}}"),
			[]string{`t.yaml:6: listen[1].address: duplicate listen address 127.0.0.1:53 (first at line 5)`}},

		{"bad CIDR in acl", withPool("acl: ['10.0.0.0/33']"),
			[]string{`t.yaml:4: acl: expected a CIDR like 192.0.2.0/24 or 2001:db8::/32, got "10.0.0.0/33"`}},

		{"unknown policy lists the valid ones", text("pools:", "  default:", "    policy: fastest", "    backends: [{name: r1, address: '127.0.0.1:5301'}]"),
			[]string{`t.yaml:3: pools.default.policy: unknown policy "fastest" (valid: roundrobin, wrandom, leastoutstanding, chashed, firstavailable, latency)`}},
		{"pool with no backends", text("pools:", "  default:", "    policy: roundrobin"),
			[]string{`t.yaml:3: pools.default: a pool needs at least one backend`}},
		{"pool with an empty backend list", text("pools:", "  default:", "    backends: []"),
			[]string{`t.yaml:3: pools.default: a pool needs at least one backend`}},
		{"pool with nothing in it", text("pools:", "  default:"),
			[]string{`t.yaml:2: pools.default: a pool needs at least one backend`}},
		{"duplicate pool name", withPool("  default:", "    backends: [{name: r2, address: '127.0.0.1:5302'}]"),
			[]string{`t.yaml:4: pools: duplicate pool name "default" (first at line 2)`}},
		{"duplicate backend name across pools", withPool("  corp:", "    backends:", "      - {name: r1, address: '127.0.0.1:5311'}"),
			[]string{`t.yaml:6: pools.corp.backends[0].name: duplicate backend name "r1" (first at line 3; names are unique across all pools)`}},
		{"backend without port", text("pools:", "  default:", "    backends:", "      - {name: r1, address: '127.0.0.1'}"),
			[]string{`t.yaml:4: pools.default.backends[0].address: "127.0.0.1" needs a port (IP:port, IPv6 in brackets like [2001:db8::1]:53)`}},
		{"multicast backend", text("pools:", "  default:", "    backends:", "      - {name: r1, address: '224.0.0.1:53'}"),
			[]string{`t.yaml:4: pools.default.backends[0].address: 224.0.0.1:53 is not a usable address (multicast)`}},
		{"IPv6 multicast backend", text("pools:", "  default:", "    backends:", "      - {name: r1, address: '[ff02::1]:53'}"),
			[]string{`t.yaml:4: pools.default.backends[0].address: [ff02::1]:53 is not a usable address (multicast)`}},
		{"broadcast backend", text("pools:", "  default:", "    backends:", "      - {name: r1, address: '255.255.255.255:53'}"),
			[]string{`t.yaml:4: pools.default.backends[0].address: 255.255.255.255:53 is not a usable address (broadcast)`}},
		{"backend without name", text("pools:", "  default:", "    backends:", "      - address: '127.0.0.1:53'"),
			[]string{`t.yaml:4: pools.default.backends[0]: name is required`}},
		{"backend name unsafe in a URL", text("pools:", "  default:", "    backends:", "      - {name: 'a/b', address: '127.0.0.1:53'}"),
			[]string{`t.yaml:4: pools.default.backends[0].name: name "a/b" must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`}},
		{"weight below 1", text("pools:", "  default:", "    backends:", "      - {name: r1, address: '127.0.0.1:53', weight: 0}"),
			[]string{`t.yaml:4: pools.default.backends[0].weight: must be at least 1, got 0`}},

		{"rise and fall below 1", withPool("    healthcheck:", "      rise: 0", "      fall: -1"), []string{
			`t.yaml:5: pools.default.healthcheck.rise: must be at least 1, got 0`,
			`t.yaml:6: pools.default.healthcheck.fall: must be at least 1, got -1`,
		}},
		{"healthcheck timeout not below interval", withPool("    healthcheck:", "      interval: 1s", "      timeout: 1s"),
			[]string{`t.yaml:6: pools.default.healthcheck: timeout (1s) must be shorter than interval (1s)`}},
		{"healthcheck interval below default timeout", withPool("    healthcheck: {interval: 200ms}"),
			[]string{`t.yaml:4: pools.default.healthcheck: timeout (500ms) must be shorter than interval (200ms)`}},
		{"unknown healthcheck mode", withPool("    healthcheck: {mode: passive}"),
			[]string{`t.yaml:4: pools.default.healthcheck.mode: unknown healthcheck mode "passive" (valid: active, lazy)`}},
		{"bad health qname", withPool("    healthcheck: {qname: 'a..b'}"),
			[]string{`t.yaml:4: pools.default.healthcheck.qname: "a..b" is not a valid domain name`}},
		{"unknown qtype and rcode", withPool("    healthcheck:", "      qtype: AAA", "      rcodes: [NOERROR, NOTHING]"), []string{
			`t.yaml:5: pools.default.healthcheck.qtype: unknown query type "AAA" (like A, AAAA, MX, ANY or TYPE65)`,
			`t.yaml:6: pools.default.healthcheck.rcodes: unknown rcode "NOTHING" (like NOERROR, NXDOMAIN, SERVFAIL, REFUSED)`,
		}},
		{"boolean that is not one", withPool("    healthcheck: {tcp: 'yes'}"),
			[]string{`t.yaml:4: pools.default.healthcheck.tcp: expected true or false, got "yes"`}},
		{"healthcheck failure_ratio out of range", withPool("    healthcheck:", "      failure_ratio: 0", "      min_samples: 0"), []string{
			`t.yaml:5: pools.default.healthcheck.failure_ratio: must be greater than 0`,
			`t.yaml:6: pools.default.healthcheck.min_samples: must be at least 1, got 0`,
		}},
		{"healthcheck failure_ratio above 1 or not a number", withPool("    healthcheck: {failure_ratio: 1.5}", "  other:",
			"    backends: [{name: o1, address: '127.0.0.1:1'}]", "    healthcheck: {failure_ratio: half}"), []string{
			`t.yaml:4: pools.default.healthcheck.failure_ratio: must be between 0 and 1, got 1.5`,
			`t.yaml:7: pools.other.healthcheck.failure_ratio: expected a number, got "half"`,
		}},
		{"healthcheck window too short, too long, or not a duration", withPool("    healthcheck: {window: 500ms}", "  other:",
			"    backends: [{name: o1, address: '127.0.0.1:1'}]", "    healthcheck: {window: 1h}", "  third:",
			"    backends: [{name: o2, address: '127.0.0.1:2'}]", "    healthcheck: {window: 10}"), []string{
			`t.yaml:4: pools.default.healthcheck.window: must be between 1s and 10m0s, got 500ms`,
			`t.yaml:7: pools.other.healthcheck.window: must be between 1s and 10m0s, got 1h0m0s`,
			`t.yaml:10: pools.third.healthcheck.window: expected a duration like 500ms, got "10"`,
		}},
		{"extended rcode cannot answer a probe", withPool("    healthcheck: {rcodes: [NOERROR, BADCOOKIE]}"),
			[]string{`t.yaml:4: pools.default.healthcheck.rcodes: BADCOOKIE cannot be a probe's answer: probes carry no EDNS, so only rcodes 0-15 occur`}},
		{"negative cache size", withPool("    cache: {size: -1}"),
			[]string{`t.yaml:4: pools.default.cache.size: must be between 0 and 10000000, got -1`}},
		{"xdp entries beyond the cache", withPool("    cache: {size: 10, xdp_entries: 20}"),
			[]string{`t.yaml:4: pools.default.cache: xdp_entries (20) cannot exceed size (10): XDP serves the hottest cached answers`}},
		{"xdp entries on a pool other than the default", withPool("    cache: {size: 10, xdp_entries: 5}", "  other:",
			"    backends: [{name: o1, address: '127.0.0.1:1'}]", "    cache: {size: 10, xdp_entries: 5}"),
			[]string{`t.yaml:5: pools.other.cache: xdp_entries only applies to the default pool (default): XDP answers only the queries no rule sends to another pool`}},

		{"rule naming a missing pool", withPool("rules:", "  - {match: {qname_suffix: [corp.example.]}, action: {pool: corp}}"),
			[]string{`t.yaml:5: rules[0].action.pool: no pool named "corp" (pools: default)`}},
		{"rule with two actions", withPool("rules:", "  - action: {refuse: true, drop: true}"),
			[]string{`t.yaml:5: rules[0].action: has 2 actions (refuse, drop); a rule does exactly one thing`}},
		{"rule with no action", withPool("rules:", "  - match: {qtype: [ANY]}", "    action: {refuse: false}"),
			[]string{`t.yaml:6: rules[0].action: needs exactly one of pool, refuse, drop, nxdomain, rcode, spoof, spoof_cname, truncate, ratelimit, nocache, log`}},
		{"rule without action key", withPool("rules:", "  - match: {qtype: [ANY]}"),
			[]string{`t.yaml:5: rules[0]: needs an action (one of pool, refuse, drop, nxdomain, rcode, spoof, spoof_cname, truncate, ratelimit, nocache, log)`}},
		{"spoof address that is not an IP", withPool("rules:", "  - action: {spoof: [192.0.2.999]}"),
			[]string{`t.yaml:5: rules[0].action.spoof: expected an IP address, got "192.0.2.999"`}},

		{"bgp identity errors", withPool(
			"bgp:",
			"  asn: 0",
			"  router_id: '2001:db8::1'",
			"  peers:",
			"    - {address: 198.51.100.1}",
			"    - {asn: 65000}",
		), []string{
			`t.yaml:5: bgp.asn: must be between 1 and 4294967295, got 0`,
			`t.yaml:6: bgp.router_id: must be an IPv4 address, got "2001:db8::1"`,
			`t.yaml:8: bgp.peers[0]: asn is required`,
			`t.yaml:9: bgp.peers[1]: address is required`,
		}},
		{"bgp without asn, router_id or peers", withPool("bgp:", "  withdraw_after: 1s"), []string{
			`t.yaml:4: bgp: asn is required`,
			`t.yaml:4: bgp: router_id is required`,
			`t.yaml:4: bgp: needs at least one peer`,
		}},
		{"bad announcements", withPool(
			"bgp:",
			"  asn: 65001",
			"  router_id: 198.51.100.2",
			"  peers: [{address: 198.51.100.1, asn: 65000}]",
			"  announce:",
			"    - {prefix: 192.0.2.53/24, pools: [default]}",
			"    - {prefix: 192.0.2.0/33, pools: [default]}",
			"    - {prefix: 192.0.2.53/32, pools: [nope]}",
			"    - {prefix: '2001:db8:53::/48', pools: [default]}",
			"    - {prefix: '2001:db8:54::/48', next_hop: 192.0.2.1, pools: [default]}",
			"    - {prefix: 192.0.2.54/32, pools: [default], min_healthy_fraction: 1.5}",
		), []string{
			`t.yaml:9: bgp.announce[0].prefix: 192.0.2.53/24 has host bits set (did you mean 192.0.2.0/24?)`,
			`t.yaml:10: bgp.announce[1].prefix: expected a prefix like 192.0.2.53/32 or 2001:db8::53/128, got "192.0.2.0/33"`,
			`t.yaml:11: bgp.announce[2].pools: no pool named "nope" (pools: default)`,
			`t.yaml:12: bgp.announce[3]: IPv6 prefix 2001:db8:53::/48 needs an explicit next_hop`,
			`t.yaml:13: bgp.announce[4].next_hop: 192.0.2.1 is IPv4 but the prefix 2001:db8:54::/48 is IPv6`,
			`t.yaml:14: bgp.announce[5].min_healthy_fraction: must be between 0 and 1, got 1.5`,
		}},
		{"bad peer transport and drain extras", withPool(
			"bgp:",
			"  asn: 65001",
			"  router_id: 198.51.100.2",
			"  peers:",
			"    - {address: 198.51.100.1, asn: 65000, hold_time: 0s, port: 0, ttl_security: maybe}",
			"  drain: {prepend: 11, med: -1}",
		), []string{
			`t.yaml:8: bgp.peers[0].hold_time: must be at least 3s, got 0s`,
			`t.yaml:8: bgp.peers[0].port: must be between 1 and 65535, got 0`,
			`t.yaml:8: bgp.peers[0].ttl_security: expected true or false, got "maybe"`,
			`t.yaml:9: bgp.drain.prepend: must be between 0 and 10, got 11`,
			`t.yaml:9: bgp.drain.med: must be between 0 and 4294967295, got -1`,
		}},

		{"xdp without interface and with bad values", withPool(
			"xdp:",
			"  mode: turbo",
			"  vips: ['192.0.2.53']",
			"  ratelimit: {v4_prefix: 33, v6_prefix: 0}",
		), []string{
			`t.yaml:4: xdp: interface is required`,
			`t.yaml:5: xdp.mode: unknown xdp mode "turbo" (valid: auto, generic, driver)`,
			`t.yaml:6: xdp.vips: "192.0.2.53" needs a port (IP:port, IPv6 in brackets like [2001:db8::1]:53)`,
			`t.yaml:7: xdp.ratelimit.v4_prefix: must be between 1 and 32, got 33`,
			`t.yaml:7: xdp.ratelimit.v6_prefix: must be between 1 and 128, got 0`,
		}},
		{"xdp rate limit out of range", withPool(
			"xdp:",
			"  interface: eth0",
			"  vips: ['192.0.2.53:53']",
			"  ratelimit: {qps: 2000000000, burst: 0, tc_slip: -1}",
		), []string{
			`t.yaml:7: xdp.ratelimit.qps: must be between 0 and 1000000000, got 2000000000`,
			`t.yaml:7: xdp.ratelimit.burst: must be between 1 and 1000000000, got 0`,
			`t.yaml:7: xdp.ratelimit.tc_slip: must be at least 0, got -1`,
		}},

		{"several problems are all reported in line order", text(
			"listen: [{address: '127.0.0.1:53', protocol: dns}]",
			"pools:",
			"  default:",
			"    policy: random",
			"    backends:",
			"      - {name: r1, address: '127.0.0.1:5301', weight: 0}",
			"      - {name: r1, address: '127.0.0.1:5302'}",
			"rules:",
			"  - action: {pool: other}",
			"admin: {listen: 'localhost:8053', token: x}",
		), []string{
			`t.yaml:1: listen[0].protocol: unknown protocol "dns" (valid: do53, dot, doh, doq)`,
			`t.yaml:4: pools.default.policy: unknown policy "random" (valid: roundrobin, wrandom, leastoutstanding, chashed, firstavailable, latency)`,
			`t.yaml:6: pools.default.backends[0].weight: must be at least 1, got 0`,
			`t.yaml:7: pools.default.backends[1].name: duplicate backend name "r1" (first at line 6; names are unique across all pools)`,
			`t.yaml:9: rules[0].action.pool: no pool named "other" (pools: default)`,
			`t.yaml:10: admin.listen: expected IP:port (IPv6 in brackets like [2001:db8::1]:53), got "localhost:8053"`,
			`t.yaml:10: unknown key "token" in admin`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("t.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want errors:\n%s", strings.Join(tt.want, "\n"))
			}
			if cfg != nil {
				t.Errorf("Parse returned a config along with errors")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors", err)
			}
			if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
			if len(errs.List) != len(tt.want) {
				t.Errorf("got %d errors in List, want %d", len(errs.List), len(tt.want))
			}
		})
	}
}
