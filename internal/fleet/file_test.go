package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFleet writes a fleet file in a fresh directory, with token files
// given relative to it.
func writeFleet(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleet.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadFleet(t *testing.T) {
	t.Run("relative paths are relative to the file", func(t *testing.T) {
		p := writeFleet(t, "nodes:\n  - {name: a, admin: 'http://127.0.0.1:1', token_file: tok/a, cacert: /etc/ca.pem}\n")
		nodes, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		if nodes[0].TokenFile != filepath.Join(filepath.Dir(p), "tok/a") || nodes[0].CACert != "/etc/ca.pem" {
			t.Errorf("%+v", nodes[0])
		}
	})
	for _, tc := range []struct{ name, body, want string }{
		{"unknown key", "nodes: [{name: a, admin: x, tokenfile: t}]", "field tokenfile not found"},
		{"twice", "nodes: [{name: a, admin: x}, {name: a, admin: y}]", `node "a" is listed twice`},
		{"no admin", "nodes: [{name: a}]", `node "a" has no admin URL`},
		{"no name", "nodes: [{admin: x}]", "node 1 has no name"},
		{"empty", "nodes: []", "no nodes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Load(writeFleet(t, tc.body)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
