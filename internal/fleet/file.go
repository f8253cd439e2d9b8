// Package fleet reads fleet files (the nodes an operator runs) and asks a
// node's admin API for the figures fleet views show. anyfrontctl -fleet and
// the dashboard's fleet page share it, so both show the same row.
package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// maxFleetFileBytes bounds the fleet file: a few hundred nodes fit many
// times over, a path pointing at a device fails fast.
const maxFleetFileBytes = 1 << 20

// Node is one entry of a fleet file.
type Node struct {
	Name      string `yaml:"name" json:"name"`
	Admin     string `yaml:"admin" json:"admin"`
	TokenFile string `yaml:"token_file" json:"-"`
	CACert    string `yaml:"cacert" json:"-"`
}

// Load reads a fleet file: `nodes: [{name, admin, token_file,
// cacert}]`. Relative paths are relative to the file, so a fleet
// directory can be moved or checked out anywhere.
func Load(path string) ([]Node, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fleet file: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxFleetFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fleet file %s: %w", path, err)
	}
	if len(raw) > maxFleetFileBytes {
		return nil, fmt.Errorf("fleet file %s: larger than %d bytes", path, maxFleetFileBytes)
	}
	var doc struct {
		Nodes []Node `yaml:"nodes"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true) // a typo ("tokenfile") must not silently drop the token
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("fleet file %s: %w", path, err)
	}
	if len(doc.Nodes) == 0 {
		return nil, fmt.Errorf("fleet file %s: no nodes (want nodes: [{name, admin, token_file, cacert}])", path)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	seen := map[string]bool{}
	var errs []error
	for i := range doc.Nodes {
		n := &doc.Nodes[i]
		switch {
		case n.Name == "":
			errs = append(errs, fmt.Errorf("fleet file %s: node %d has no name", path, i+1))
		case seen[n.Name]:
			errs = append(errs, fmt.Errorf("fleet file %s: node %q is listed twice", path, n.Name))
		case n.Admin == "":
			errs = append(errs, fmt.Errorf("fleet file %s: node %q has no admin URL", path, n.Name))
		}
		seen[n.Name] = true
		n.TokenFile, n.CACert = rel(n.TokenFile), rel(n.CACert)
	}
	return doc.Nodes, errors.Join(errs...)
}

// Find returns the named node, or an error listing the names there are.
func Find(nodes []Node, name string) (Node, error) {
	var names []string
	for _, n := range nodes {
		if n.Name == name {
			return n, nil
		}
		names = append(names, n.Name)
	}
	return Node{}, fmt.Errorf("node %q is not in the fleet file (nodes: %s)", name, strings.Join(names, ", "))
}
