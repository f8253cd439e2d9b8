package ebpf

import (
	"os"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/config"
)

// TestDocsExamplesLoad loads every yaml example in docs/xdp.md and builds
// a Dataplane from it, so the operator docs cannot drift from the code.
func TestDocsExamplesLoad(t *testing.T) {
	const file = "../docs/xdp.md"
	md, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	blocks := 0
	for _, part := range strings.Split(string(md), "```yaml\n")[1:] {
		block, _, ok := strings.Cut(part, "```")
		if !ok {
			t.Fatalf("an unterminated yaml block in %s", file)
		}
		blocks++
		cfg, err := config.Parse(file, []byte(block))
		if err != nil {
			t.Errorf("an example does not load:\n%v", err)
			continue
		}
		if _, err := New(cfg.XDP, nil); err != nil {
			t.Errorf("an example loads but New refuses it: %v", err)
		}
	}
	if blocks == 0 {
		t.Fatalf("no yaml examples in %s", file)
	}
}
