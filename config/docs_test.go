package config

import (
	"os"
	"strings"
	"testing"
)

// docsFile is the operator reference whose examples must stay loadable.
const docsFile = "../docs/config.md"

// yamlBlocks returns the ```yaml fenced blocks of a Markdown text, each
// preceded by blank lines so that line numbers in errors are the
// document's own.
func yamlBlocks(md string) (blocks []string) {
	var cur []string
	in, start := false, 0 // start: lines before the block's first line
	for i, l := range strings.Split(md, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```yaml":
			in, start, cur = true, i+1, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, strings.Repeat("\n", start)+strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, l)
		}
	}
	return blocks
}

func TestEveryYAMLExampleInTheDocsLoads(t *testing.T) {
	md, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlocks(string(md))
	if len(blocks) < 5 {
		t.Fatalf("found %d yaml blocks in %s; the extractor or the docs are broken", len(blocks), docsFile)
	}
	for _, b := range blocks {
		if _, err := Parse(docsFile, []byte(b)); err != nil {
			t.Errorf("a yaml example does not load:\n%v", err)
		}
	}
}
