package bgp

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
)

// docsFile is the operator page whose examples must stay true.
const docsFile = "../docs/bgp.md"

// fenced returns the blocks of a Markdown text fenced as lang.
func fenced(md, lang string) []string {
	var blocks, cur []string
	in := false
	for _, l := range strings.Split(md, "\n") {
		switch {
		case !in && strings.TrimSpace(l) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(l) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n")+"\n")
		case in:
			cur = append(cur, l)
		}
	}
	return blocks
}

func TestDocsExamplesAreTrue(t *testing.T) {
	data, err := os.ReadFile(docsFile)
	if err != nil {
		t.Fatal(err)
	}
	md := string(data)
	t.Run("every yaml example loads, with a bgp section", func(t *testing.T) {
		blocks := fenced(md, "yaml")
		if len(blocks) == 0 {
			t.Fatal("no yaml example found")
		}
		for _, b := range blocks {
			cfg, err := config.Parse(docsFile, []byte(b))
			if err != nil {
				t.Errorf("a yaml example does not load:\n%v", err)
			} else if cfg.BGP == nil {
				t.Errorf("a yaml example has no bgp section:\n%s", b)
			}
		}
	})
	t.Run("the status example has exactly the API's fields", func(t *testing.T) {
		blocks := fenced(md, "json")
		if len(blocks) != 1 {
			t.Fatalf("want one json example, found %d", len(blocks))
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(blocks[0])))
		dec.DisallowUnknownFields()
		var st Status
		if err := dec.Decode(&st); err != nil {
			t.Fatal(err)
		}
		if len(st.Peers) == 0 || len(st.Prefixes) == 0 {
			t.Errorf("example lacks peers or prefixes: %+v", st)
		}
	})
	t.Run("every metric is documented", func(t *testing.T) {
		ch := make(chan *prometheus.Desc, 16)
		collector{}.Describe(ch)
		close(ch)
		for d := range ch {
			// Desc has no name accessor; its String form holds fqName: "...".
			s := d.String()
			i := strings.Index(s, `fqName: "`) + len(`fqName: "`)
			name := s[i : i+strings.IndexByte(s[i:], '"')]
			if !strings.Contains(md, "`"+name+"{") {
				t.Errorf("metric %s is not in %s", name, docsFile)
			}
		}
	})
}
