package config

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the yaml.Node tree by hand rather than yaml.Unmarshal into
// structs: nodes carry their line, so every problem is reported where it
// is, and walking goes on after a problem so all of them are reported.
type decoder struct {
	file string
	dir  string // relative file paths in the config are resolved against it
	errs []Error
}

// noMax marks an integer range with no upper bound.
const noMax = math.MaxInt64

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: n.Line, Msg: fmt.Sprintf(format, args...), col: n.Column})
}

func (d *decoder) errorAt(line int, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// resolve follows YAML aliases (*name) to the anchored node, so anchors
// work anywhere a value does.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Kind == yaml.ScalarNode && !isNull(n):
		return strconv.Quote(n.Value)
	}
	return "nothing"
}

// label names a place in the file for messages; the root has no path.
func label(where string) string {
	if where == "" {
		return "top level"
	}
	return where
}

func join(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

func index(where string, i int) string { return fmt.Sprintf("%s[%d]", where, i) }

type pair struct{ key, val *yaml.Node }

// pairs lists a mapping's key/value pairs with YAML merge keys (<<: *base)
// expanded; keys written explicitly win over merged ones, and among merged
// sources the first wins, as the YAML merge spec says.
func (d *decoder) pairs(n *yaml.Node, where string) []pair {
	var explicit, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSources(v, where)...)
			continue
		}
		explicit = append(explicit, pair{k, v})
	}
	if len(merged) == 0 {
		return explicit
	}
	have := make(map[string]bool, len(explicit))
	for _, p := range explicit {
		have[p.key.Value] = true
	}
	out := explicit
	for _, p := range merged {
		if !have[p.key.Value] {
			have[p.key.Value] = true
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergeSources(v *yaml.Node, where string) []pair {
	v = resolve(v)
	var srcs []*yaml.Node
	if v.Kind == yaml.SequenceNode {
		for _, s := range v.Content {
			srcs = append(srcs, resolve(s))
		}
	} else {
		srcs = []*yaml.Node{v}
	}
	var out []pair
	for _, s := range srcs {
		if s.Kind != yaml.MappingNode {
			d.errorf(s, "%s: <<: expected a mapping or a list of mappings to merge, got %s", label(where), describe(s))
			continue
		}
		out = append(out, d.pairs(s, where)...)
	}
	return out
}

// fieldSet is a decoded mapping with a fixed set of keys. Keys given a
// null value (key: with nothing after it) count as absent.
type fieldSet struct {
	d     *decoder
	where string
	line  int // the mapping's own line, for "x is required" problems
	vals  map[string]*yaml.Node
	keys  map[string]*yaml.Node
}

// fields checks that n is a mapping whose keys are all in known, reporting
// unknown and duplicate keys. ok is false when n is not a mapping.
func (d *decoder) fields(n *yaml.Node, where string, known ...string) (f fieldSet, ok bool) {
	n = resolve(n)
	f = fieldSet{d: d, where: where, line: n.Line, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, "%s: expected a mapping, got %s", label(where), describe(n))
		return f, false
	}
	for _, p := range d.pairs(n, where) {
		k := p.key
		if where == "" && strings.HasPrefix(k.Value, "x-") {
			// Top-level x- keys hold YAML anchors for reuse (as in Docker
			// Compose files); they are not config.
			continue
		}
		if !slices.Contains(known, k.Value) {
			in := "in " + where
			if where == "" {
				in = "at top level"
			}
			d.errorf(k, "unknown key %q %s", k.Value, in)
			continue
		}
		if first, dup := f.keys[k.Value]; dup {
			d.errorf(k, "duplicate key %q in %s (first at line %d)", k.Value, label(where), first.Line)
			continue
		}
		f.keys[k.Value] = k
		if v := resolve(p.val); !isNull(v) {
			f.vals[k.Value] = v
		}
	}
	return f, true
}

// get returns the value of key, or nil when it is absent or null.
func (f fieldSet) get(key string) *yaml.Node { return f.vals[key] }

// at is the path of key, for messages.
func (f fieldSet) at(key string) string { return join(f.where, key) }

// keyLine is the line of key, or of the mapping when key is absent.
func (f fieldSet) keyLine(key string) int {
	if k := f.keys[key]; k != nil {
		return k.Line
	}
	return f.line
}

// require reports key as missing and returns nil when it is absent.
func (f fieldSet) require(key string) *yaml.Node {
	n := f.vals[key]
	if n == nil {
		f.d.errorAt(f.line, "%s: %s is required", label(f.where), key)
	}
	return n
}

// The setters below store a value only when the key is present and valid,
// so a default already in *dst survives an absent key. They return true
// when they stored a value.

func (f fieldSet) str(key string, dst *string) bool {
	n := f.vals[key]
	if n == nil {
		return false
	}
	s, ok := f.d.str(n, f.at(key))
	if ok {
		*dst = s
	}
	return ok
}

func (f fieldSet) int(key string, min, max int64, dst *int) bool {
	n := f.vals[key]
	if n == nil {
		return false
	}
	v, ok := f.d.integer(n, f.at(key), min, max)
	if ok {
		*dst = int(v)
	}
	return ok
}

func (f fieldSet) uint32(key string, min int64, dst *uint32) bool {
	n := f.vals[key]
	if n == nil {
		return false
	}
	v, ok := f.d.integer(n, f.at(key), min, math.MaxUint32)
	if ok {
		*dst = uint32(v)
	}
	return ok
}

func (f fieldSet) bool(key string, dst *bool) bool {
	n := f.vals[key]
	if n == nil {
		return false
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		f.d.errorf(n, "%s: expected true or false, got %s", f.at(key), describe(n))
		return false
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		f.d.errorf(n, "%s: expected true or false, got %s", f.at(key), describe(n))
		return false
	}
	*dst = b
	return true
}

func (f fieldSet) float(key string, min, max float64, dst *float64) bool {
	n := f.vals[key]
	if n == nil {
		return false
	}
	tag := n.ShortTag()
	if n.Kind != yaml.ScalarNode || (tag != "!!float" && tag != "!!int") {
		f.d.errorf(n, "%s: expected a number, got %s", f.at(key), describe(n))
		return false
	}
	v, err := strconv.ParseFloat(n.Value, 64)
	if err != nil {
		f.d.errorf(n, "%s: expected a number, got %s", f.at(key), describe(n))
		return false
	}
	if v < min || v > max {
		f.d.errorf(n, "%s: must be between %g and %g, got %g", f.at(key), min, max, v)
		return false
	}
	*dst = v
	return true
}

// duration stores a Go duration ("500ms", "2s", "1m30s"); positive also
// rejects zero, for timeouts and intervals where zero makes no sense.
func (f fieldSet) duration(key string, positive bool, dst *time.Duration) bool {
	n := f.vals[key]
	if n == nil {
		return false
	}
	where := f.at(key)
	if n.Kind != yaml.ScalarNode {
		f.d.errorf(n, "%s: expected a duration like 500ms, got %s", where, describe(n))
		return false
	}
	v, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		f.d.errorf(n, "%s: expected a duration like 500ms, got %s", where, describe(n))
		return false
	case v < 0:
		f.d.errorf(n, "%s: must not be negative, got %s", where, v)
		return false
	case positive && v == 0:
		f.d.errorf(n, "%s: must be greater than 0", where)
		return false
	}
	*dst = v
	return true
}

// list returns the items of a sequence, aliases resolved.
func (f fieldSet) list(key string) ([]*yaml.Node, bool) {
	n := f.vals[key]
	if n == nil {
		return nil, false
	}
	return f.d.list(n, f.at(key))
}

func (d *decoder) list(n *yaml.Node, where string) ([]*yaml.Node, bool) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, "%s: expected a list, got %s", where, describe(n))
		return nil, false
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, it := range n.Content {
		items[i] = resolve(it)
	}
	return items, true
}

// each decodes every item of the list at key with parse, keeping the good
// ones; present reports whether the key was there at all.
func each[T any](f fieldSet, key string, parse func(n *yaml.Node, where string) (T, bool)) (out []T, present bool) {
	items, ok := f.list(key)
	if !ok {
		return nil, f.vals[key] != nil
	}
	out = make([]T, 0, len(items))
	for _, it := range items {
		if v, ok := parse(it, f.at(key)); ok {
			out = append(out, v)
		}
	}
	return out, true
}

func (d *decoder) str(n *yaml.Node, where string) (string, bool) {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.errorf(n, "%s: expected a string, got %s", where, describe(n))
		return "", false
	}
	return n.Value, true
}

func (d *decoder) integer(n *yaml.Node, where string, min, max int64) (int64, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		d.errorf(n, "%s: expected an integer, got %s", where, describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.errorf(n, "%s: integer %s is out of range", where, n.Value)
		return 0, false
	}
	if v < min || v > max {
		if max == noMax {
			d.errorf(n, "%s: must be at least %d, got %d", where, min, v)
		} else {
			d.errorf(n, "%s: must be between %d and %d, got %d", where, min, max, v)
		}
		return 0, false
	}
	return v, true
}
