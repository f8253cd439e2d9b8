package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFleetStatus runs status over two real admin servers and one address
// nobody listens on.
func TestFleetStatus(t *testing.T) {
	a, b := newEnv(t, bgpStatus{}), newEnv(t, nil)
	// A port that was just free: connection refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	for i, e := range []*env{a, b} {
		data, _ := os.ReadFile(e.tokenFile)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprint("n", i)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	fleet := filepath.Join(dir, "fleet.yaml")
	body := fmt.Sprintf("nodes:\n  - {name: n1, admin: %q, token_file: n0}\n  - {name: n2, admin: %q, token_file: n1}\n", a.url, b.url)
	if err := os.WriteFile(fleet, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("every node answers: exit 0, one row each", func(t *testing.T) {
		code, out, errOut := runCLI("-fleet", fleet, "status")
		if code != exitOK {
			t.Fatalf("code %d: %s %s", code, out, errOut)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[1], "n1 ") || !strings.Contains(lines[1], "1/1") || !strings.Contains(lines[1], "yes") {
			t.Errorf("table:\n%s", out)
		}
	})
	t.Run("-json and a node that cannot be reached", func(t *testing.T) {
		p := filepath.Join(dir, "fleet3.yaml")
		if err := os.WriteFile(p, []byte(body+fmt.Sprintf("  - {name: gone, admin: %q}\n", dead)), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runCLI("-fleet", p, "-json", "-timeout", "2s", "status")
		if code != exitUnreachable || !strings.Contains(errOut, "gone (") || strings.Contains(errOut, "n1 (") {
			t.Errorf("code %d, stderr %q", code, errOut)
		}
		var rows []nodeStatus
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 3 {
			t.Fatalf("%v: %s", err, out)
		}
		if rows[0].PrefixesAnnounced != 1 || rows[0].PrefixesConfigured != 1 || rows[0].BackendsTotal != 2 ||
			!rows[0].Serving || rows[2].Error == "" {
			t.Errorf("%+v", rows)
		}
	})
	t.Run("-node runs one command on that node", func(t *testing.T) {
		if code, out, errOut := runCLI("-fleet", fleet, "-node", "n2", "node", "drain"); code != exitOK {
			t.Fatalf("code %d: %s %s", code, out, errOut)
		}
		if !b.store.Node(nil).Drained || a.store.Node(nil).Drained {
			t.Error("the drain did not land on n2 alone")
		}
		if code, _, errOut := runCLI("-fleet", fleet, "-node", "n9", "backends"); code != exitUsage || !strings.Contains(errOut, "nodes: n1, n2") {
			t.Errorf("unknown node: %d %s", code, errOut)
		}
		if code, _, _ := runCLI("-fleet", fleet, "backends"); code != exitUsage {
			t.Errorf("-fleet without -node or status: %d", code)
		}
	})
}

func TestMoreCommands(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"rules"}, exitOK, "none"},
		{[]string{"blocks"}, exitOK, "none"},
		{[]string{"stats"}, exitOK, "queries/s:"},
		{[]string{"top"}, exitOK, "top lists are off"},
		{[]string{"top", "0"}, exitUsage, ""},
		{[]string{"blocks", "lift", "192.0.2.0/24"}, exitFailed, ""},
		{[]string{"completion", "bash"}, exitOK, "complete -F _anyfrontctl anyfrontctl"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := e.ctl(t, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.out) {
				t.Errorf("code %d (want %d): %q %q", code, tc.code, out, errOut)
			}
		})
	}
}
