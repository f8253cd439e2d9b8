package config

import (
	"strconv"
	"strings"

	"github.com/miekg/dns"
	"gopkg.in/yaml.v3"
)

// Bounds on rules.
const (
	// maxMatchDepth bounds nesting of all/any/not: a config that nests
	// deeper is a mistake, and the bound keeps evaluation cheap.
	maxMatchDepth = 8
	// defaultRuleSources is ratelimit.max_sources' default: 65536
	// prefixes take a few MiB and cover any legitimate client base of one
	// node; a flood from more prefixes is the XDP rate limit's job.
	defaultRuleSources = 65536
	// maxRuleSources caps max_sources (and dynamic_blocks.max_tracked).
	maxRuleSources = 16 << 20
)

// transportNames are the values of match.transport.
var transportNames = []string{"udp", "tcp", "dot", "doh", "doq"}

// actionKeys are the keys of an action; nocache may go with pool.
var actionKeys = []string{"pool", "refuse", "drop", "nxdomain", "rcode", "spoof", "spoof_cname", "truncate", "ratelimit", "nocache", "log"}

// rules decodes the first-match-wins rule list. Pools are already decoded,
// so pool names are checked here.
func (d *decoder) rules(n *yaml.Node, cfg *Config) []Rule {
	items, ok := d.list(n, "rules")
	if !ok {
		return nil
	}
	var out []Rule
	for i, it := range items {
		where := index("rules", i)
		f, ok := d.fields(it, where, "match", "action")
		if !ok {
			continue
		}
		r := Rule{Line: it.Line}
		// An absent or empty match matches every query: a catch-all rule.
		if m := f.get("match"); m != nil {
			r.Match = d.match(m, f.at("match"), 0)
		}
		if a := f.get("action"); a != nil {
			r.Action = d.action(a, f.at("action"), cfg)
		} else {
			d.errorAt(f.line, "%s: needs an action (one of %s)", where, strings.Join(actionKeys, ", "))
		}
		out = append(out, r)
	}
	return out
}

func (d *decoder) match(n *yaml.Node, where string, depth int) Match {
	var m Match
	f, ok := d.fields(n, where, "qname", "qname_suffix", "qtype", "client", "opcode", "rd", "transport", "probability", "all", "any", "not")
	if !ok {
		return m
	}
	m.QName, _ = each(f, "qname", d.domain)
	m.QNameSuffix, _ = each(f, "qname_suffix", d.domain)
	m.QType, _ = each(f, "qtype", d.qtype)
	m.Client, _ = each(f, "client", d.prefix)
	m.Opcode, _ = each(f, "opcode", d.opcode)
	if f.get("rd") != nil {
		var rd bool
		if f.bool("rd", &rd) {
			m.RD = &rd
		}
	}
	m.Transport, _ = each(f, "transport", func(n *yaml.Node, where string) (string, bool) {
		s, ok := d.str(n, where)
		if ok && !contains(transportNames, s) {
			d.errorf(n, "%s: unknown transport %q (valid: %s)", where, s, strings.Join(transportNames, ", "))
			return "", false
		}
		return s, ok
	})
	if p := f.get("probability"); p != nil {
		if f.float("probability", 0, 1, &m.Probability) && m.Probability == 0 {
			d.errorf(p, "%s: 0 never matches; leave the key out or use a value in (0, 1]", f.at("probability"))
		}
	}
	nested := func(key string, n *yaml.Node, where string) (Match, bool) {
		if depth+1 >= maxMatchDepth {
			d.errorf(n, "%s: all/any/not nested deeper than %d", where, maxMatchDepth)
			return Match{}, false
		}
		return d.match(n, where, depth+1), true
	}
	for _, key := range []string{"all", "any"} {
		items, ok := f.list(key)
		if !ok {
			continue
		}
		if len(items) == 0 {
			d.errorf(f.get(key), "%s: needs at least one match", f.at(key))
		}
		for i, it := range items {
			if sub, ok := nested(key, it, index(f.at(key), i)); ok {
				if key == "all" {
					m.All = append(m.All, sub)
				} else {
					m.Any = append(m.Any, sub)
				}
			}
		}
	}
	if n := f.get("not"); n != nil {
		if sub, ok := nested("not", n, f.at("not")); ok {
			m.Not = &sub
		}
	}
	return m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// opcode parses an opcode name (QUERY, IQUERY, STATUS, NOTIFY, UPDATE) or
// number 0-15.
func (d *decoder) opcode(n *yaml.Node, where string) (int, bool) {
	s, ok := d.str(n, where)
	if !ok {
		return 0, false
	}
	if op, ok := dns.StringToOpcode[strings.ToUpper(s)]; ok {
		return op, true
	}
	if v, err := strconv.Atoi(s); err == nil && v >= 0 && v <= 15 {
		return v, true
	}
	d.errorf(n, "%s: unknown opcode %q (QUERY, NOTIFY, UPDATE, STATUS, IQUERY or 0-15)", where, s)
	return 0, false
}

// anyRcode parses an rcode name or number for answers anyfront makes: the
// header has 4 bits, so 0-15.
func (d *decoder) anyRcode(n *yaml.Node, where string) (int, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!int" {
		v, ok := d.integer(n, where, 0, 15)
		return int(v), ok
	}
	r, ok := d.rcode(n, where)
	if ok && r > 15 {
		d.errorf(n, "%s: %s is an extended rcode; rules answer with rcodes 0-15", where, n.Value)
		return 0, false
	}
	return r, ok
}

func (d *decoder) action(n *yaml.Node, where string, cfg *Config) Action {
	var a Action
	f, ok := d.fields(n, where, actionKeys...)
	if !ok {
		return a
	}
	if p := f.get("pool"); p != nil && f.str("pool", &a.Pool) {
		if _, ok := cfg.Pools[a.Pool]; !ok {
			d.errorf(p, "%s: no pool named %q (pools: %s)", f.at("pool"), a.Pool, strings.Join(cfg.PoolNames, ", "))
		}
	}
	f.bool("refuse", &a.Refuse)
	f.bool("drop", &a.Drop)
	f.bool("nxdomain", &a.NXDomain)
	if r := f.get("rcode"); r != nil {
		if rc, ok := d.anyRcode(r, f.at("rcode")); ok {
			a.Rcode = &rc
		}
	}
	a.Spoof, _ = each(f, "spoof", d.addr)
	if c := f.get("spoof_cname"); c != nil {
		a.SpoofCNAME, _ = d.domain(c, f.at("spoof_cname"))
	}
	f.bool("truncate", &a.Truncate)
	if r := f.get("ratelimit"); r != nil {
		a.RateLimit = d.ruleRateLimit(r, f.at("ratelimit"))
	}
	if f.bool("nocache", &a.NoCache) && a.NoCache && a.Pool == "" && len(cfg.Pools) > 1 {
		if _, ok := cfg.Pools["default"]; !ok {
			d.errorAt(f.keyLine("nocache"), "%s: nocache without a pool forwards to the pool named default, and there is none: add pool: NAME", where)
		}
	}
	f.bool("log", &a.Log)

	// Count what was asked for, not what decoded: "pool: 5, drop: true"
	// has two actions even though the pool name is bad. nocache goes
	// with pool as one forwarding action.
	var set []string
	forward := false
	for _, k := range actionKeys {
		v := f.get(k)
		switch {
		case v == nil:
		case v.ShortTag() == "!!bool" && strings.EqualFold(v.Value, "false"):
			// refuse: false and drop: false ask for nothing.
		case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		case k == "pool" || k == "nocache":
			if !forward {
				set = append(set, k)
			}
			forward = true
		default:
			set = append(set, k)
		}
	}
	switch {
	case len(set) == 0:
		d.errorAt(f.line, "%s: needs exactly one of %s", where, strings.Join(actionKeys, ", "))
	case len(set) > 1:
		d.errorAt(f.line, "%s: has %d actions (%s); a rule does exactly one thing", where, len(set), strings.Join(set, ", "))
	}
	return a
}

func (d *decoder) ruleRateLimit(n *yaml.Node, where string) *RuleRateLimit {
	r := &RuleRateLimit{V4Prefix: 32, V6Prefix: 64, Over: "drop", MaxSources: defaultRuleSources}
	f, ok := d.fields(n, where, "qps", "burst", "v4_prefix", "v6_prefix", "over", "max_sources")
	if !ok {
		return r
	}
	if f.require("qps") != nil {
		f.int("qps", 1, maxRateQPS, &r.QPS)
	}
	f.int("burst", 1, maxRateQPS, &r.Burst)
	f.int("v4_prefix", 1, 32, &r.V4Prefix)
	f.int("v6_prefix", 1, 128, &r.V6Prefix)
	f.enum("over", "over-limit action", []string{"drop", "refuse", "truncate"}, &r.Over)
	f.int("max_sources", 1, maxRuleSources, &r.MaxSources)
	if r.Burst == 0 {
		r.Burst = max(r.QPS, 1)
	}
	return r
}
