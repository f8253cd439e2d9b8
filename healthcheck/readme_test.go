package healthcheck

import (
	"os"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/config"
)

// TestReadmeExamplesLoad parses every yaml example in README.md as a pool's
// healthcheck, so the README cannot drift from what config accepts.
func TestReadmeExamplesLoad(t *testing.T) {
	md, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur []string
	in := false
	for _, l := range strings.Split(string(md), "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "~~~ yaml":
			in, cur = true, nil
		case in && strings.TrimSpace(l) == "~~~":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, "    "+l)
		}
	}
	if len(blocks) < 3 {
		t.Fatalf("found %d yaml examples in README.md; the extractor or the README is broken", len(blocks))
	}
	for _, b := range blocks {
		doc := "pools:\n  default:\n    backends: [{name: r1, address: '127.0.0.1:53'}]\n" + b + "\n"
		if _, err := config.Parse("README.md", []byte(doc)); err != nil {
			t.Errorf("example does not load:\n%s\n%v", b, err)
		}
	}
}
