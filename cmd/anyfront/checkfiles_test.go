package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
)

// runCheck runs `anyfront -check -config cfg` and returns its exit code
// and output.
func runCheck(t *testing.T, cfg string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command(anyfrontBin(t), "-check", "-config", cfg)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String()
}

// TestCheckChecksTheFilesTheConfigNames: -check opens what the daemon will
// open, so that what it passes also starts (issue 16, point 5).
func TestCheckChecksTheFilesTheConfigNames(t *testing.T) {
	dir := t.TempDir()
	a := testlab.SelfSignedCert(t, dir, "a")
	b := testlab.SelfSignedCert(t, dir, "b")
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	token := write("token", "s3cret\n")
	empty := write("empty", "\n")
	password := write("password", "md5pass\n")
	corrupt := write("state.json", "{\"version\": 1, \"node_drained\": tru")
	missing := filepath.Join(dir, "missing")
	pool := "pools:\n  default:\n    backends:\n      - {name: r1, address: \"127.0.0.1:5301\"}\n"
	dot := func(cert, key string) string {
		return fmt.Sprintf("listen:\n  - address: \"127.0.0.1:8853\"\n    protocol: dot\n    tls: {cert: %q, key: %q}\n", cert, key)
	}
	bgp := func(pw string) string {
		return fmt.Sprintf("bgp:\n  asn: 65001\n  router_id: 198.51.100.2\n  peers:\n    - {address: 198.51.100.1, asn: 65000, password_file: %q}\n  announce: [{prefix: 192.0.2.53/32, pools: [default]}]\n", pw)
	}
	for _, tt := range []struct {
		name string
		body string
		want []string // each a line of the output; none: exit 0
	}{
		{"every file present and right", dot(a.CertFile, a.KeyFile) + pool +
			fmt.Sprintf("admin: {token_file: %q, tls: {cert: %q, key: %q}}\n", token, a.CertFile, a.KeyFile) + bgp(password), nil},
		{"missing DoT certificate", dot(missing, a.KeyFile) + pool,
			[]string{":4: listen[0].tls: cert " + missing + ": no such file or directory"}},
		{"DoT key of another certificate", dot(a.CertFile, b.KeyFile) + pool,
			[]string{":4: listen[0].tls: cert " + a.CertFile + " / key " + b.KeyFile + ": tls: private key does not match public key"}},
		{"missing admin.tls key", pool + fmt.Sprintf("admin:\n  tls: {cert: %q, key: %q}\n", a.CertFile, missing),
			[]string{":6: admin.tls: key " + missing + ": no such file or directory"}},
		{"missing token file", pool + fmt.Sprintf("admin:\n  token_file: %q\n", missing),
			[]string{":6: admin.token_file: " + missing + ": no such file or directory"}},
		{"empty token file", pool + fmt.Sprintf("admin:\n  token_file: %q\n", empty),
			[]string{":6: admin.token_file: " + empty + ": empty"}},
		{"missing BGP password file", pool + bgp(missing),
			[]string{":9: bgp.peers[0].password_file: " + missing + ": no such file or directory"}},
		{"corrupt state file", pool + fmt.Sprintf("node: {state_file: %q}\n", corrupt),
			[]string{":5: node.state_file: state file " + corrupt + ": corrupt state file"}},
		{"multicast backend", "pools:\n  default:\n    backends:\n      - {name: r1, address: \"224.0.0.1:53\"}\n",
			[]string{":4: pools.default.backends[0].address: 224.0.0.1:53 is not a usable address (multicast)"}},
		{"every problem at once, in line order", dot(missing, a.KeyFile) + pool + fmt.Sprintf("admin:\n  token_file: %q\n", empty) + bgp(missing),
			[]string{":4: listen[0].tls: cert " + missing, ":10: admin.token_file: " + empty + ": empty", ":15: bgp.peers[0].password_file: " + missing}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := write(strings.ReplaceAll(tt.name, " ", "_")+".yaml", tt.body)
			code, out := runCheck(t, cfg)
			if tt.want == nil {
				if code != 0 {
					t.Fatalf("exit %d, want 0:\n%s", code, out)
				}
				return
			}
			if code != 1 {
				t.Errorf("exit %d, want 1:\n%s", code, out)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tt.want), out)
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], cfg+w) {
					t.Errorf("line %d = %q\nwant prefix %q", i, lines[i], cfg+w)
				}
			}
			if strings.Contains(out, "s3cret") || strings.Contains(out, "md5pass") {
				t.Errorf("a secret leaked into the output:\n%s", out)
			}
		})
	}
}
