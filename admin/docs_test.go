package admin

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/config"
)

// TestDocsListEveryEndpoint holds docs/admin-api.md and the mux together: a
// new endpoint without documentation, or documentation of an endpoint that
// is gone, fails here.
func TestDocsListEveryEndpoint(t *testing.T) {
	doc, err := os.ReadFile("../docs/admin-api.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, m := range regexp.MustCompile("(?m)^### `([A-Z]+ /[^`]*)`$").FindAllStringSubmatch(string(doc), -1) {
		documented = append(documented, m[1])
	}
	s, err := New(config.Admin{}, Deps{Store: newStore(t), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, r := range s.endpoints() {
		served = append(served, strings.TrimSuffix(r.pattern, "{$}"))
	}
	slices.Sort(documented)
	slices.Sort(served)
	if !slices.Equal(documented, served) {
		t.Errorf("docs/admin-api.md headings and endpoints differ:\ndocumented: %q\nserved:     %q", documented, served)
	}
}
