package config

import (
	"strings"
	"testing"
	"time"
)

func TestRulesDecode(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(withPool(
		"  corp: {backends: [{name: c1, address: '127.0.0.1:5311'}]}",
		"rules:",
		"  - match: {opcode: [NOTIFY, 5], rd: false, transport: [tcp, dot], probability: 0.5}",
		"    action: {pool: corp, nocache: true}",
		"  - match:",
		"      all: [{qname_suffix: [A.Test]}, {qtype: [MX]}]",
		"      any: [{client: ['192.0.2.0/24']}, {not: {qtype: [A]}}]",
		"    action: {rcode: SERVFAIL}",
		"  - {action: {rcode: 9}}",
		"  - {action: {nxdomain: true}}",
		"  - {action: {spoof_cname: Portal.Example}}",
		"  - {action: {truncate: true}}",
		"  - {action: {ratelimit: {qps: 100, v6_prefix: 48, over: truncate}}}",
		"  - {action: {log: true}}",
		"  - {action: {nocache: true}}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Rules
	if len(r) != 9 {
		t.Fatalf("%d rules", len(r))
	}
	m := r[0].Match
	if len(m.Opcode) != 2 || m.Opcode[0] != 4 || m.Opcode[1] != 5 || m.RD == nil || *m.RD || len(m.Transport) != 2 || m.Probability != 0.5 {
		t.Errorf("rule 0 match: %+v", m)
	}
	if a := r[0].Action; a.Pool != "corp" || !a.NoCache {
		t.Errorf("rule 0 action: %+v", a)
	}
	m = r[1].Match
	if len(m.All) != 2 || m.All[0].QNameSuffix[0] != "a.test." || len(m.Any) != 2 || m.Any[1].Not == nil || m.Any[1].Not.QType[0] != 1 {
		t.Errorf("rule 1 match: %+v", m)
	}
	if a := r[1].Action; a.Rcode == nil || *a.Rcode != 2 {
		t.Errorf("rule 1 action: %+v", a)
	}
	if a := r[2].Action; a.Rcode == nil || *a.Rcode != 9 {
		t.Errorf("rule 2 rcode: %+v", a)
	}
	if !r[3].Action.NXDomain || r[4].Action.SpoofCNAME != "portal.example." || !r[5].Action.Truncate || !r[7].Action.Log || !r[8].Action.NoCache {
		t.Errorf("actions: %+v", r)
	}
	rl := r[6].Action.RateLimit
	if rl == nil || *rl != (RuleRateLimit{QPS: 100, Burst: 100, V4Prefix: 32, V6Prefix: 48, Over: "truncate", MaxSources: defaultRuleSources}) {
		t.Errorf("ratelimit: %+v", rl)
	}
}

func TestDynBlocksDecode(t *testing.T) {
	cfg, err := Parse("t.yaml", []byte(withPool(
		"dynamic_blocks:",
		"  v4_prefix: 24",
		"  action: refuse",
		"  detectors:",
		"    - {kind: queries, rate: 1000}",
		"    - {kind: rcode, rcode: NXDOMAIN, rate: 50, window: 5s, block_for: 10m}",
		"    - {kind: response_bytes, rate: 1e6}",
	)))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.DynBlocks
	if d == nil || d.V4Prefix != 24 || d.V6Prefix != 64 || d.Action != "refuse" || d.MaxBlocks != defaultDynMaxBlocks || d.MaxTracked != defaultDynMaxTracked || len(d.Detectors) != 3 {
		t.Fatalf("%+v", d)
	}
	if det := d.Detectors[1]; det.Kind != "rcode" || det.Rcode != 3 || det.Rate != 50 || det.Window != 5*time.Second || det.BlockFor != 10*time.Minute {
		t.Errorf("%+v", det)
	}
	if det := d.Detectors[0]; det.Window != defaultDynWindow || det.BlockFor != defaultDynBlockFor {
		t.Errorf("defaults: %+v", det)
	}
}

func TestRuleAndDynBlockErrors(t *testing.T) {
	deep := "{qtype: [A]}"
	for i := 0; i < maxMatchDepth; i++ {
		deep = "{not: " + deep + "}"
	}
	for _, tt := range []struct {
		name string
		yaml string
		want string
	}{
		{"unknown transport", withPool("rules:", "  - {match: {transport: [quic]}, action: {drop: true}}"),
			`t.yaml:5: rules[0].match.transport: unknown transport "quic" (valid: udp, tcp, dot, doh, doq)`},
		{"probability zero", withPool("rules:", "  - {match: {probability: 0}, action: {drop: true}}"),
			`t.yaml:5: rules[0].match.probability: 0 never matches; leave the key out or use a value in (0, 1]`},
		{"probability over one", withPool("rules:", "  - {match: {probability: 1.5}, action: {drop: true}}"),
			`t.yaml:5: rules[0].match.probability: must be between 0 and 1, got 1.5`},
		{"unknown opcode", withPool("rules:", "  - {match: {opcode: [PUSH]}, action: {drop: true}}"),
			`t.yaml:5: rules[0].match.opcode: unknown opcode "PUSH" (QUERY, NOTIFY, UPDATE, STATUS, IQUERY or 0-15)`},
		{"empty any", withPool("rules:", "  - {match: {any: []}, action: {drop: true}}"),
			`t.yaml:5: rules[0].match.any: needs at least one match`},
		{"nesting too deep", withPool("rules:", "  - {match: "+deep+", action: {drop: true}}"),
			`nested deeper than 8`},
		{"extended rcode", withPool("rules:", "  - {action: {rcode: BADKEY}}"),
			`t.yaml:5: rules[0].action.rcode: BADKEY is an extended rcode; rules answer with rcodes 0-15`},
		{"rcode number out of range", withPool("rules:", "  - {action: {rcode: 16}}"),
			`t.yaml:5: rules[0].action.rcode: must be between 0 and 15, got 16`},
		{"nocache with another action", withPool("rules:", "  - {action: {nocache: true, drop: true}}"),
			`t.yaml:5: rules[0].action: has 2 actions (drop, nocache); a rule does exactly one thing`},
		{"ratelimit without qps", withPool("rules:", "  - {action: {ratelimit: {burst: 5}}}"),
			`t.yaml:5: rules[0].action.ratelimit: qps is required`},
		{"ratelimit bad over", withPool("rules:", "  - {action: {ratelimit: {qps: 5, over: spoof}}}"),
			`t.yaml:5: rules[0].action.ratelimit.over: unknown over-limit action "spoof" (valid: drop, refuse, truncate)`},
		{"nocache alone without a default pool", text(
			"pools:",
			"  a: {backends: [{name: r1, address: '127.0.0.1:5301'}]}",
			"  b: {backends: [{name: r2, address: '127.0.0.1:5302'}]}",
			"rules:",
			"  - {action: {nocache: true}}"),
			`t.yaml:5: rules[0].action: nocache without a pool forwards to the pool named default, and there is none: add pool: NAME`},
		{"dynamic blocks without detectors", withPool("dynamic_blocks: {v4_prefix: 24}"),
			`t.yaml:4: dynamic_blocks: needs at least one detector`},
		{"rcode detector without rcode", withPool("dynamic_blocks:", "  detectors: [{kind: rcode, rate: 5}]"),
			`t.yaml:5: dynamic_blocks.detectors[0]: kind rcode needs an rcode (like NXDOMAIN)`},
		{"unknown detector kind", withPool("dynamic_blocks:", "  detectors: [{kind: qps, rate: 5}]"),
			`t.yaml:5: dynamic_blocks.detectors[0].kind: unknown detector kind "qps" (valid: queries, rcode, response_bytes)`},
		{"window too short", withPool("dynamic_blocks:", "  detectors: [{kind: queries, rate: 5, window: 1ms}]"),
			`t.yaml:5: dynamic_blocks.detectors[0].window: must be between 100ms and 10m0s`},
		{"bad block action", withPool("dynamic_blocks:", "  action: spoof", "  detectors: [{kind: queries, rate: 5}]"),
			`t.yaml:5: dynamic_blocks.action: unknown dynamic block action "spoof" (valid: drop, refuse)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v\nwant %s", err, tt.want)
			}
		})
	}
}
