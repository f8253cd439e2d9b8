package xdpanswer

import (
	"os/exec"
	"strings"
	"testing"
)

func TestAnswerKeyString(t *testing.T) {
	for _, tt := range []struct {
		key  AnswerKey
		want string
	}{
		{AnswerKey{Name: "\x07example\x03com\x00", Type: 1, Class: 1}, "example.com./1/1"},
		{AnswerKey{Name: "\x07example\x03com\x00", Type: 28, Class: 1, EDNS: true, DO: true, CD: true}, "example.com./28/1 edns do cd"},
		{AnswerKey{Name: "\x00", Type: 2, Class: 1, EDNS: true}, "./2/1 edns"},
		// Bytes that are not plain text are escaped; a name cut short
		// shows as far as it parses.
		{AnswerKey{Name: "\x03a.b\x02\\ \x00", Type: 1, Class: 1}, "a\\046b.\\092\\032./1/1"},
		{AnswerKey{Name: "\x05ab", Type: 1, Class: 1}, "./1/1"},
		{AnswerKey{Name: "\x01a\xc0\x0c", Type: 1, Class: 1}, "a./1/1"},
	} {
		if got := tt.key.String(); got != tt.want {
			t.Errorf("%q: String() = %q, want %q", tt.key.Name, got, tt.want)
		}
	}
}

// TestProxyLinksNoLoader keeps the point of this package: the proxy tree's
// non-test code names the answer types from here and links neither the
// loader (package ebpf) nor cilium/ebpf.
func TestProxyLinksNoLoader(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/anyfront/anyfront/proxy/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/cilium/ebpf") || dep == "github.com/anyfront/anyfront/ebpf" {
			t.Errorf("the proxy tree depends on %s", dep)
		}
	}
}
