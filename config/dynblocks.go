package config

import (
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults and bounds of dynamic_blocks.
const (
	defaultDynMaxBlocks  = 10000
	defaultDynWindow     = 10 * time.Second
	defaultDynBlockFor   = 60 * time.Second
	defaultDynV6Prefix   = 64
	maxDynDetectors      = 8 // the proxy keeps one window per detector in each tracked prefix
	maxDynWindow         = 10 * time.Minute
	maxDynBlockFor       = 7 * 24 * time.Hour
	minDynWindow         = 100 * time.Millisecond
	defaultDynMaxTracked = defaultRuleSources
)

var detectorKinds = []string{"queries", "rcode", "response_bytes"}

// dynBlocks decodes the dynamic_blocks section; line is that of its key.
func (d *decoder) dynBlocks(n *yaml.Node, line int) *DynBlocks {
	b := &DynBlocks{V4Prefix: 32, V6Prefix: defaultDynV6Prefix, Action: "drop",
		MaxBlocks: defaultDynMaxBlocks, MaxTracked: defaultDynMaxTracked, Line: line}
	f, ok := d.fields(n, "dynamic_blocks", "v4_prefix", "v6_prefix", "action", "max_blocks", "max_tracked", "detectors")
	if !ok {
		return b
	}
	f.line = line
	f.int("v4_prefix", 1, 32, &b.V4Prefix)
	f.int("v6_prefix", 1, 128, &b.V6Prefix)
	f.enum("action", "dynamic block action", []string{"drop", "refuse"}, &b.Action)
	f.int("max_blocks", 1, maxRuleSources, &b.MaxBlocks)
	f.int("max_tracked", 1, maxRuleSources, &b.MaxTracked)
	items, ok := f.list("detectors")
	if f.get("detectors") == nil || ok && len(items) == 0 {
		d.errorAt(f.keyLine("detectors"), "dynamic_blocks: needs at least one detector")
	}
	if len(items) > maxDynDetectors {
		d.errorAt(f.keyLine("detectors"), "dynamic_blocks: at most %d detectors, got %d", maxDynDetectors, len(items))
	}
	for i, it := range items {
		if det, ok := d.detector(it, index("dynamic_blocks.detectors", i)); ok {
			b.Detectors = append(b.Detectors, det)
		}
	}
	return b
}

func (d *decoder) detector(n *yaml.Node, where string) (Detector, bool) {
	det := Detector{Window: defaultDynWindow, BlockFor: defaultDynBlockFor, Line: n.Line}
	f, ok := d.fields(n, where, "kind", "rcode", "rate", "window", "block_for")
	if !ok {
		return det, false
	}
	good := true
	if f.require("kind") != nil {
		good = f.enum("kind", "detector kind", detectorKinds, &det.Kind) && good
	} else {
		good = false
	}
	if r := f.get("rcode"); r != nil {
		rc, ok := d.anyRcode(r, f.at("rcode"))
		det.Rcode, good = rc, ok && good
		if det.Kind != "rcode" && det.Kind != "" {
			d.errorf(r, "%s: rcode is only used by kind rcode", f.at("rcode"))
		}
	} else if det.Kind == "rcode" {
		d.errorAt(f.line, "%s: kind rcode needs an rcode (like NXDOMAIN)", where)
		good = false
	}
	if f.require("rate") != nil {
		good = f.float("rate", 0.001, 1e12, &det.Rate) && good
	} else {
		good = false
	}
	if w := f.get("window"); w != nil && f.duration("window", true, &det.Window) {
		if det.Window < minDynWindow || det.Window > maxDynWindow {
			d.errorf(w, "%s: must be between %s and %s", f.at("window"), minDynWindow, maxDynWindow)
			good = false
		}
	}
	if b := f.get("block_for"); b != nil && f.duration("block_for", true, &det.BlockFor) {
		if det.BlockFor > maxDynBlockFor {
			d.errorf(b, "%s: at most %s", f.at("block_for"), maxDynBlockFor)
			good = false
		}
	}
	return det, good
}
