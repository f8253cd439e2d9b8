package h2

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

func TestCurlOverHTTP2(t *testing.T) {
	curl := testlab.RequireBinary(t, "curl")
	l := startLab(t, Config{}, echo{})
	q := query(0x4242)
	qf := filepath.Join(t.TempDir(), "q.bin")
	if err := os.WriteFile(qf, q, 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	url := l.url("/dns-query")
	// One curl, three requests: they share one HTTP/2 connection.
	out, err := exec.Command(curl, "-sS", "--http2", "--cacert", l.caFile,
		"-w", "%{http_code} %{http_version} %{content_type}\n",
		"-o", filepath.Join(dir, "get"), url+"?dns="+b64(q),
		"-o", filepath.Join(dir, "bad"), url+"?dns=***",
		"--next", "-sS", "--http2", "--cacert", l.caFile,
		"-w", "%{http_code} %{http_version} %{content_type}\n",
		"-H", "content-type: "+MediaType, "--data-binary", "@"+qf,
		"-o", filepath.Join(dir, "post"), url,
	).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	want := []string{"200 2 " + MediaType, "400 2 ", "200 2 " + MediaType}
	if len(lines) != len(want) {
		t.Fatalf("curl printed %q", out)
	}
	for i := range want {
		if strings.TrimSpace(lines[i]) != strings.TrimSpace(want[i]) {
			t.Errorf("request %d: %q, want %q", i, lines[i], want[i])
		}
	}
	ans := append([]byte(nil), q...)
	ans[2] |= 0x80
	for _, f := range []string{"get", "post"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !bytes.Equal(b, ans) {
			t.Errorf("%s answer %x (%v), want %x", f, b, err, ans)
		}
	}
}

func TestKdigOverHTTPS(t *testing.T) {
	kdig := testlab.RequireBinary(t, "kdig")
	l := startLab(t, Config{}, echo{})
	host, port, _ := net.SplitHostPort(l.addr)
	for _, mode := range []string{"+https", "+https-get"} {
		t.Run(mode, func(t *testing.T) {
			out, err := exec.Command(kdig, "@"+host, "-p", port, mode, "+tls-ca="+l.caFile,
				"+tls-hostname=localhost", "+timeout=5", "+retry=0", "example.com", "A").CombinedOutput()
			if err != nil {
				t.Fatalf("kdig: %v\n%s", err, out)
			}
			s := string(out)
			if !strings.Contains(s, "status: NOERROR") || !strings.Contains(s, "HTTP session (HTTP/2-") || !strings.Contains(s, "(status: 200)") {
				t.Fatalf("kdig output:\n%s", s)
			}
		})
	}
	if n := l.srv.Stats().Responses(200); n != 2 {
		t.Errorf("200 responses %d, want 2", n)
	}
}
