package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const onePool = "pools:\n  default:\n    backends: [{name: r1, address: \"127.0.0.1:5301\"}]\n"

func TestNodeSection(t *testing.T) {
	host, _ := os.Hostname()
	t.Run("absent: named after the host, no state file", func(t *testing.T) {
		cfg := mustParse(t, "/etc/anyfront/a.yaml", onePool)
		if host != "" && cfg.Node.Name != host {
			t.Errorf("Name = %q, want the host name %q", cfg.Node.Name, host)
		}
		if cfg.Node.Site != "" || cfg.Node.StateFile != "" {
			t.Errorf("Node = %+v, want no site and no state file", cfg.Node)
		}
	})
	t.Run("given: relative state file from the config's directory", func(t *testing.T) {
		cfg := mustParse(t, "/etc/anyfront/a.yaml", "node:\n  name: ams1-n1\n  site: ams1\n  state_file: state.json\n"+onePool)
		want := Node{Name: "ams1-n1", Site: "ams1", StateFile: filepath.Join("/etc/anyfront", "state.json"), Line: 1}
		check(t, "Node", cfg.Node, want)
	})
	for _, c := range []struct{ name, yaml, want string }{
		{"empty name", "node: {name: \"\"}\n", "a.yaml:1: node.name: must not be empty"},
		{"empty state file", "node: {state_file: \"\"}\n", "a.yaml:1: node.state_file: must not be empty"},
		{"unknown key", "node: {colour: red}\n", "a.yaml:1:"},
		{"long site", "node: {site: " + strings.Repeat("x", 65) + "}\n", "node.site: longer than 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("a.yaml", []byte(c.yaml+onePool))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
