package config

import (
	"os"

	"gopkg.in/yaml.v3"
)

// Node identifies this anyfront instance in a fleet and says where the
// operator's runtime decisions are kept.
type Node struct {
	// Name is the node's name in metrics (anyfront_build_info) and fleet
	// views. Default: the host name.
	Name string
	// Site is the PoP or data centre the node belongs to; may be empty.
	Site string
	// StateFile keeps operator drains (node and backends) across restarts;
	// empty: drains live in memory only.
	StateFile string
	Line      int
}

// defaultNode names the node after its host, the name an operator sees on
// the box; "anyfront" when the kernel will not say.
func defaultNode() Node {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "anyfront"
	}
	return Node{Name: name}
}

// node decodes node: {name, site, state_file}.
func (d *decoder) node(n *yaml.Node, line int, dst *Node) {
	dst.Line = line
	f, ok := d.fields(n, "node", "name", "site", "state_file")
	if !ok {
		return
	}
	if v := f.get("name"); v != nil {
		if s, ok := d.str(v, f.at("name")); ok {
			if s == "" {
				d.errorf(v, "node.name: must not be empty (leave it out for the host name)")
			} else if len(s) > maxNameLen {
				d.errorf(v, "node.name: longer than %d characters", maxNameLen)
			} else {
				dst.Name = s
			}
		}
	}
	if v := f.get("site"); v != nil {
		if s, ok := d.str(v, f.at("site")); ok {
			if len(s) > maxNameLen {
				d.errorf(v, "node.site: longer than %d characters", maxNameLen)
			} else {
				dst.Site = s
			}
		}
	}
	if v := f.get("state_file"); v != nil {
		dst.StateFile, _ = d.path(v, f.at("state_file"))
	}
}
