package rules

import (
	"strconv"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
)

// Status is one rule as GET /api/v1/rules shows it: its match and action
// as the config gives them, and its counters.
type Status struct {
	Index  int            `json:"index"` // position in the list, from 0
	Line   int            `json:"line"`  // in the config file
	Match  map[string]any `json:"match"`
	Action map[string]any `json:"action"`
	Hits   uint64         `json:"hits"` // queries the rule matched
	// Limited counts queries a ratelimit rule found over the rate.
	Limited *uint64 `json:"limited,omitempty"`
}

// Status lists the rules with their counters, in order; an empty list (not
// nil, so it encodes as []) for a nil Set.
func (s *Set) Status() []Status {
	out := []Status{}
	if s == nil {
		return out
	}
	for i := range s.cfg.Rules {
		rc, r := &s.cfg.Rules[i], &s.rules[i]
		st := Status{Index: i, Line: rc.Line, Match: matchView(&rc.Match), Action: actionView(&rc.Action), Hits: r.hits.Load()}
		if r.rl != nil {
			n := r.rl.limited.Load()
			st.Limited = &n
		}
		out = append(out, st)
	}
	return out
}

func matchView(m *config.Match) map[string]any {
	v := map[string]any{}
	if len(m.QName) > 0 {
		v["qname"] = m.QName
	}
	if len(m.QNameSuffix) > 0 {
		v["qname_suffix"] = m.QNameSuffix
	}
	if len(m.QType) > 0 {
		var ts []string
		for _, t := range m.QType {
			ts = append(ts, dns.Type(t).String())
		}
		v["qtype"] = ts
	}
	if len(m.Client) > 0 {
		var cs []string
		for _, c := range m.Client {
			cs = append(cs, c.String())
		}
		v["client"] = cs
	}
	if len(m.Opcode) > 0 {
		var os []string
		for _, o := range m.Opcode {
			os = append(os, opcodeName(o))
		}
		v["opcode"] = os
	}
	if m.RD != nil {
		v["rd"] = *m.RD
	}
	if len(m.Transport) > 0 {
		v["transport"] = m.Transport
	}
	if m.Probability > 0 {
		v["probability"] = m.Probability
	}
	for key, list := range map[string][]config.Match{"all": m.All, "any": m.Any} {
		if len(list) == 0 {
			continue
		}
		var vs []map[string]any
		for i := range list {
			vs = append(vs, matchView(&list[i]))
		}
		v[key] = vs
	}
	if m.Not != nil {
		v["not"] = matchView(m.Not)
	}
	return v
}

func opcodeName(o int) string {
	if s, ok := dns.OpcodeToString[o]; ok {
		return s
	}
	return strconv.Itoa(o)
}

func actionView(a *config.Action) map[string]any {
	v := map[string]any{}
	switch {
	case a.Pool != "":
		v["pool"] = a.Pool
	case a.Refuse:
		v["refuse"] = true
	case a.Drop:
		v["drop"] = true
	case a.NXDomain:
		v["nxdomain"] = true
	case a.Rcode != nil:
		v["rcode"] = rcodeName(*a.Rcode)
	case len(a.Spoof) > 0:
		var ss []string
		for _, s := range a.Spoof {
			ss = append(ss, s.String())
		}
		v["spoof"] = ss
	case a.SpoofCNAME != "":
		v["spoof_cname"] = a.SpoofCNAME
	case a.Truncate:
		v["truncate"] = true
	case a.RateLimit != nil:
		rl := a.RateLimit
		v["ratelimit"] = map[string]any{"qps": rl.QPS, "burst": rl.Burst, "v4_prefix": rl.V4Prefix,
			"v6_prefix": rl.V6Prefix, "over": rl.Over, "max_sources": rl.MaxSources}
	case a.Log:
		v["log"] = true
	}
	if a.NoCache {
		v["nocache"] = true
	}
	return v
}

var rcodeNames = [16]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI"}

// rcodeName is an rcode's name, or its number where it has none: the same
// names as the proxy's metrics.
func rcodeName(rc int) string {
	if n := rcodeNames[rc&0xF]; n != "" {
		return n
	}
	return strconv.Itoa(rc)
}
