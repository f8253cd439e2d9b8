package config

import (
	"strings"

	"gopkg.in/yaml.v3"
)

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
			r.Match = d.match(m, f.at("match"))
		}
		if a := f.get("action"); a != nil {
			r.Action = d.action(a, f.at("action"), cfg)
		} else {
			d.errorAt(f.line, "%s: needs an action (one of pool, refuse, drop, spoof)", where)
		}
		out = append(out, r)
	}
	return out
}

func (d *decoder) match(n *yaml.Node, where string) Match {
	var m Match
	f, ok := d.fields(n, where, "qname", "qname_suffix", "qtype", "client")
	if !ok {
		return m
	}
	m.QName, _ = each(f, "qname", d.domain)
	m.QNameSuffix, _ = each(f, "qname_suffix", d.domain)
	m.QType, _ = each(f, "qtype", d.qtype)
	m.Client, _ = each(f, "client", d.prefix)
	return m
}

func (d *decoder) action(n *yaml.Node, where string, cfg *Config) Action {
	var a Action
	f, ok := d.fields(n, where, "pool", "refuse", "drop", "spoof")
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
	a.Spoof, _ = each(f, "spoof", d.addr)

	// Count what was asked for, not what decoded: "pool: 5, drop: true"
	// has two actions even though the pool name is bad.
	var set []string
	for _, k := range []string{"pool", "refuse", "drop", "spoof"} {
		v := f.get(k)
		switch {
		case v == nil:
		case v.ShortTag() == "!!bool" && strings.EqualFold(v.Value, "false"):
			// refuse: false and drop: false ask for nothing.
		case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		default:
			set = append(set, k)
		}
	}
	switch {
	case len(set) == 0:
		d.errorAt(f.line, "%s: needs exactly one of pool, refuse, drop, spoof", where)
	case len(set) > 1:
		d.errorAt(f.line, "%s: has %d actions (%s); a rule does exactly one thing", where, len(set), strings.Join(set, ", "))
	}
	return a
}
