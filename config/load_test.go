package config

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustParse(t *testing.T, file, yaml string) *Config {
	t.Helper()
	cfg, err := Parse(file, []byte(yaml))
	if err != nil {
		t.Fatalf("Parse:\n%v", err)
	}
	return cfg
}

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %+v, want %+v", what, got, want)
	}
}

func TestFullDesignExampleLandsInTheRightFields(t *testing.T) {
	cfg, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatalf("Load:\n%v", err)
	}
	ap, pfx, ip := netip.MustParseAddrPort, netip.MustParsePrefix, netip.MustParseAddr

	check(t, "File", cfg.File, "testdata/full.yaml")
	check(t, "Listen", cfg.Listen, []Listen{{Address: ap("127.0.0.1:5300"), Protocol: "do53", Line: 5}})
	check(t, "ACL", cfg.ACL, []netip.Prefix{pfx("127.0.0.0/8"), pfx("::1/128")})
	check(t, "Proxy", cfg.Proxy, defaultProxy())
	check(t, "PoolNames", cfg.PoolNames, []string{"default", "corp"})

	def := cfg.Pools["default"]
	check(t, "default.Policy", def.Policy, "roundrobin")
	check(t, "default.Backends", def.Backends, []Backend{
		{Name: "r1", Address: ap("127.0.0.1:5301"), Weight: 1, Order: 1, Line: 12},
		{Name: "r2", Address: ap("127.0.0.1:5302"), Weight: 1, Order: 2, Line: 13},
	})
	check(t, "default.HealthCheck", def.HealthCheck, HealthCheck{
		QName: "health.test.", QType: dns.TypeA, Interval: time.Second, Timeout: 500 * time.Millisecond,
		Rise: 2, Fall: 2, Mode: "active", Rcodes: []int{dns.RcodeSuccess, dns.RcodeNameError},
		FailureRatio: 0.3, Window: 10 * time.Second, MinSamples: 10,
	})
	check(t, "default.Cache", def.Cache, Cache{Size: 100000, ServeStale: time.Minute, XDPEntries: 4096,
		MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour, Prefetch: true})
	check(t, "default.Line", def.Line, 9)
	check(t, "corp.Backends", cfg.Pools["corp"].Backends, []Backend{{Name: "c1", Address: ap("127.0.0.1:5311"), Weight: 1, Order: 1, Line: 21}})

	check(t, "Rules", cfg.Rules, []Rule{
		{Match: Match{QNameSuffix: []string{"corp.example."}}, Action: Action{Pool: "corp"}, Line: 23},
		{Match: Match{QType: []uint16{dns.TypeANY}}, Action: Action{Refuse: true}, Line: 24},
		{Match: Match{QNameSuffix: []string{"blocked.example."}}, Action: Action{Drop: true}, Line: 25},
		{Match: Match{Client: []netip.Prefix{pfx("203.0.113.0/24")}}, Action: Action{Spoof: []netip.Addr{ip("192.0.2.99")}}, Line: 26},
	})
	check(t, "Admin", cfg.Admin, Admin{Listen: "127.0.0.1:8053", TokenFile: "/etc/anyfront/admin.token", TokenFileLine: 29})

	check(t, "BGP", *cfg.BGP, BGP{
		ASN: 65001, RouterID: ip("198.51.100.2"),
		Peers: []BGPPeer{{Address: ip("198.51.100.1"), ASN: 65000, HoldTime: 9 * time.Second, Port: 179, Line: 33}},
		Announce: []Announce{
			{Prefix: pfx("192.0.2.53/32"), Pools: []string{"default"}, MinHealthy: 1, Line: 35},
			{Prefix: pfx("2001:db8:53::53/128"), NextHop: ip("2001:db8:100::2"), Pools: []string{"default"}, MinHealthy: 1, Line: 38},
		},
		WithdrawAfter: 2 * time.Second,
		Drain:         Drain{Community: "65535:0", Grace: 30 * time.Second},
		Line:          30,
	})
	check(t, "XDP", *cfg.XDP, XDP{
		Interface: "eth0", Mode: "auto",
		VIPs:      []netip.AddrPort{ap("192.0.2.53:53"), ap("[2001:db8:53::53]:53")},
		RateLimit: RateLimit{QPS: 1000, Burst: 1000, V4Prefix: 24, V6Prefix: 56},
		Blocklist: []netip.Prefix{pfx("203.0.113.0/24")},
		Line:      44,
	})
}

func TestMinimalConfigGetsEveryDefault(t *testing.T) {
	cfg := mustParse(t, "min.yaml", text(pool...))
	check(t, "Listen", cfg.Listen, []Listen{{Address: netip.MustParseAddrPort("127.0.0.1:5300"), Protocol: "do53"}})
	check(t, "ACL", cfg.ACL, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")})
	check(t, "Proxy", cfg.Proxy, Proxy{
		Deadline: 800 * time.Millisecond, Timeout: 400 * time.Millisecond, MinTimeout: 20 * time.Millisecond,
		Retries: 4, Workers: 0, MaxInflight: 16384,
		TCP: TCPLimits{
			MaxConns: 1024, MaxConnsPerClient: 64, IdleTimeout: 10 * time.Second, MaxConnTime: 120 * time.Second,
			MaxQueriesPerConn: 10000, MaxInflightPerConn: 100, BackendConns: 4,
		},
	})
	p := cfg.Pools["default"]
	check(t, "Policy", p.Policy, "roundrobin")
	check(t, "Backends", p.Backends, []Backend{{Name: "r1", Address: netip.MustParseAddrPort("127.0.0.1:5301"), Weight: 1, Order: 1, Line: 3}})
	check(t, "HealthCheck", p.HealthCheck, HealthCheck{
		QName: "health.anyfront.test.", QType: dns.TypeA, Interval: time.Second, Timeout: 500 * time.Millisecond,
		Rise: 2, Fall: 2, Mode: "active", Rcodes: []int{dns.RcodeSuccess, dns.RcodeNameError},
		FailureRatio: 0.3, Window: 10 * time.Second, MinSamples: 10,
	})
	check(t, "Cache", p.Cache, Cache{MaxTTL: 24 * time.Hour, MaxNegativeTTL: time.Hour, Prefetch: true})
	check(t, "Rules", cfg.Rules, []Rule(nil))
	check(t, "Admin", cfg.Admin, Admin{Listen: "127.0.0.1:8053"})
	check(t, "BGP", cfg.BGP, (*BGP)(nil))
	check(t, "XDP", cfg.XDP, (*XDP)(nil))
}

func TestSectionDefaults(t *testing.T) {
	cfg := mustParse(t, "t.yaml", withPool(
		"bgp:",
		"  asn: 65001",
		"  router_id: 198.51.100.2",
		"  peers: [{address: 198.51.100.1, asn: 65000}]",
		"  announce: [{prefix: 192.0.2.53/32, pools: [default]}]",
		"xdp: {interface: eth0, vips: ['192.0.2.53:53']}",
		"acl: []",
	))
	check(t, "peer hold time", cfg.BGP.Peers[0].HoldTime, 9*time.Second)
	check(t, "peer port", cfg.BGP.Peers[0].Port, 179)
	check(t, "min_healthy", cfg.BGP.Announce[0].MinHealthy, 1)
	check(t, "withdraw_after", cfg.BGP.WithdrawAfter, 2*time.Second)
	check(t, "drain", cfg.BGP.Drain, Drain{Community: "65535:0", Grace: 30 * time.Second})
	check(t, "xdp mode", cfg.XDP.Mode, "auto")
	check(t, "ratelimit", cfg.XDP.RateLimit, RateLimit{V4Prefix: 24, V6Prefix: 56})
	rl := mustParse(t, "t.yaml", withPool("xdp: {interface: eth0, vips: ['192.0.2.53:53'], ratelimit: {qps: 50, tc_slip: 2}}"))
	check(t, "burst defaults to qps", rl.XDP.RateLimit, RateLimit{QPS: 50, Burst: 50, V4Prefix: 24, V6Prefix: 56, TCSlip: 2})
	check(t, "explicit empty acl stays empty", cfg.ACL, []netip.Prefix{})
}

func TestValuesAreNormalised(t *testing.T) {
	cfg := mustParse(t, "t.yaml", text(
		"acl: [10.1.2.3/8, 192.0.2.1, '2001:DB8::1']",
		"pools:",
		"  default:",
		"    backends:",
		"      - {name: r1, address: '[2001:db8::1]:53', order: 5}",
		"      - {name: r2, address: '127.0.0.1:53'}",
		"    healthcheck: {qname: Health.Example.COM, qtype: aaaa, rcodes: [noerror], tcp: true}",
		"rules:",
		"  - {match: {qname: [WWW.Example.org], qname_suffix: [Corp.Example], qtype: [TYPE65, mx]}, action: {refuse: true}}",
		"  - {match: {}, action: {drop: true}}",
		"  - action: {pool: default}",
	))
	check(t, "ACL", cfg.ACL, []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::1/128"),
	})
	p := cfg.Pools["default"]
	check(t, "explicit order", p.Backends[0].Order, 5)
	check(t, "position order", p.Backends[1].Order, 2)
	check(t, "qname", p.HealthCheck.QName, "health.example.com.")
	check(t, "qtype", p.HealthCheck.QType, dns.TypeAAAA)
	check(t, "rcodes", p.HealthCheck.Rcodes, []int{dns.RcodeSuccess})
	check(t, "tcp", p.HealthCheck.TCP, true)
	check(t, "match", cfg.Rules[0].Match, Match{
		QName: []string{"www.example.org."}, QNameSuffix: []string{"corp.example."}, QType: []uint16{65, dns.TypeMX},
	})
	check(t, "empty match matches everything", cfg.Rules[1].Match, Match{})
	check(t, "absent match matches everything", cfg.Rules[2].Match, Match{})
}

func TestDoTAndDoQMayShareAnAddress(t *testing.T) {
	cfg := mustParse(t, "/etc/anyfront/anyfront.yaml", withPool(
		"listen:",
		"  - {address: '[::1]:853', protocol: dot, tls: {cert: tls/cert.pem, key: /keys/key.pem}}",
		"  - {address: '[::1]:853', protocol: doq, tls: {cert: c.pem, key: k.pem}}",
		"  - {address: '127.0.0.1:0'}",
		"  - {address: '127.0.0.1:0'}",
	))
	check(t, "relative paths are taken from the config's directory", *cfg.Listen[0].TLS,
		TLS{Cert: "/etc/anyfront/tls/cert.pem", Key: "/keys/key.pem", Line: 5})
	check(t, "listeners", len(cfg.Listen), 4)
}

func TestAnchorsAndMergeKeysAreResolved(t *testing.T) {
	cfg := mustParse(t, "t.yaml", text(
		"x-hc: &hc {interval: 2s, timeout: 1s, mode: lazy}",
		"x-backend: &be {weight: 3}",
		"pools:",
		"  a:",
		"    healthcheck: *hc",
		"    backends: [{<<: *be, name: r1, address: '127.0.0.1:53'}]",
		"  b:",
		"    healthcheck: {<<: *hc, mode: active}",
		"    backends: [{<<: *be, name: r2, address: '127.0.0.1:54', weight: 7}]",
	))
	check(t, "a.mode", cfg.Pools["a"].HealthCheck.Mode, "lazy")
	check(t, "b.mode", cfg.Pools["b"].HealthCheck.Mode, "active")
	check(t, "b.interval", cfg.Pools["b"].HealthCheck.Interval, 2*time.Second)
	check(t, "merged weight", cfg.Pools["a"].Backends[0].Weight, 3)
	check(t, "explicit weight wins", cfg.Pools["b"].Backends[0].Weight, 7)
}

func TestConfigsShareNoDefaultSlices(t *testing.T) {
	a := mustParse(t, "a.yaml", withPool("  other:", "    backends: [{name: o1, address: '127.0.0.1:1'}]"))
	b := mustParse(t, "b.yaml", text(pool...))
	a.ACL[0] = netip.MustParsePrefix("0.0.0.0/0")
	a.Pools["default"].HealthCheck.Rcodes[0] = dns.RcodeRefused
	check(t, "other pool's rcodes", a.Pools["other"].HealthCheck.Rcodes, []int{dns.RcodeSuccess, dns.RcodeNameError})
	check(t, "other config's rcodes", b.Pools["default"].HealthCheck.Rcodes, []int{dns.RcodeSuccess, dns.RcodeNameError})
	check(t, "other config's acl", b.ACL[0], netip.MustParsePrefix("127.0.0.0/8"))
}

func TestLoadOfAMissingFileIsAnErrorsWithTheCause(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path)
	var errs *Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error is %T, want *Errors", err)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("errors.Is(err, fs.ErrNotExist) = false for %v", err)
	}
	check(t, "message", err.Error(), path+": cannot read: no such file or directory")
}

func TestLookups(t *testing.T) {
	cfg := mustParse(t, "t.yaml", text(
		"pools:",
		"  corp:",
		"    backends: [{name: c1, address: '127.0.0.1:1'}]",
		"  main:",
		"    backends: [{name: m1, address: '127.0.0.1:2'}, {name: m2, address: '127.0.0.1:3'}]",
	))
	b, p := cfg.Backend("m2")
	if b == nil || b.Name != "m2" || p.Name != "main" {
		t.Errorf("Backend(m2) = %v, %v", b, p)
	}
	if b, p := cfg.Backend("zz"); b != nil || p != nil {
		t.Errorf("Backend(zz) = %v, %v, want nil, nil", b, p)
	}
	check(t, "DefaultPool without a pool named default is the first", cfg.DefaultPool().Name, "corp")
	named := mustParse(t, "t.yaml", withPool("  aaa:", "    backends: [{name: a1, address: '127.0.0.1:1'}]"))
	check(t, "DefaultPool prefers the pool named default", named.DefaultPool().Name, "default")
}

func TestHealthCheckTrafficKnobs(t *testing.T) {
	for _, tt := range []struct {
		name  string
		yaml  string
		ratio float64
		win   time.Duration
		min   int
	}{
		{"defaults when absent", "    healthcheck: {mode: lazy}", 0.3, 10 * time.Second, 10},
		{"all three set", "    healthcheck: {failure_ratio: 0.5, window: 30s, min_samples: 20}", 0.5, 30 * time.Second, 20},
		{"ratio 1 and an integer ratio", "    healthcheck: {failure_ratio: 1}", 1, 10 * time.Second, 10},
		{"window at its bounds", "    healthcheck: {window: 10m, min_samples: 1}", 0.3, 10 * time.Minute, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := mustParse(t, "t.yaml", withPool(tt.yaml)).Pools["default"].HealthCheck
			check(t, "FailureRatio", h.FailureRatio, tt.ratio)
			check(t, "Window", h.Window, tt.win)
			check(t, "MinSamples", h.MinSamples, tt.min)
		})
	}
}
