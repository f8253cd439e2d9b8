package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestFleet runs two real nodes (each with two unbound backends) and
// drives them through a fleet file: status, drain and undrain one node,
// read against operate tokens with the audit lines they leave, and status
// failing by name once a node is killed.
func TestFleet(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	a := startNode(t, "node: {name: ams1-n1, site: ams1}\n"+pools(r1, r2))
	b := startNode(t, "node: {name: fra1-n1, site: fra1}\n"+pools(r1, r2))
	for _, n := range []*node{a, b} {
		n.waitFor("both backends up", 10*time.Second, func() bool {
			bs := n.backends()
			return bs["r1"].Health == "up" && bs["r2"].Health == "up"
		})
	}

	// The fleet file names token files relative to itself: the read token
	// for status, the operate token for the drains.
	dir := t.TempDir()
	copyTok := func(src, name string) {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copyTok(a.readTokenFile, "a.read")
	copyTok(b.readTokenFile, "b.read")
	copyTok(a.tokenFile, "a.operate")
	copyTok(b.tokenFile, "b.operate")
	write := func(name, ext string) string {
		p := filepath.Join(dir, name)
		body := fmt.Sprintf("nodes:\n  - {name: ams1-n1, admin: %q, token_file: a.%s}\n  - {name: fra1-n1, admin: %q, token_file: b.%s}\n",
			a.admin, ext, b.admin, ext)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	readFleet, opFleet := write("read.yaml", "read"), write("operate.yaml", "operate")
	ctl := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "anyfrontctl"), args...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	status := func(fleet string) map[string]map[string]any {
		t.Helper()
		out, errOut, code := ctl("-fleet", fleet, "-json", "status")
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		var rows []map[string]any
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		m := map[string]map[string]any{}
		for _, r := range rows {
			m[r["name"].(string)] = r
		}
		return m
	}

	t.Run("status shows both nodes with their site and version", func(t *testing.T) {
		out, errOut, code := ctl("-fleet", readFleet, "status")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{"ams1-n1  ams1", "fra1-n1  fra1", "2/2"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		rows := status(readFleet)
		if r := rows["ams1-n1"]; r["serving"] != true || r["drained"] != false || r["backends_usable"] != 2.0 || r["version"] == "" {
			t.Errorf("ams1-n1: %v", r)
		}
	})

	t.Run("the read token may not drain: 403, nothing changes, audited", func(t *testing.T) {
		_, errOut, code := ctl("-fleet", readFleet, "-node", "fra1-n1", "node", "drain")
		if code != 1 || !strings.Contains(errOut, "forbidden") {
			t.Errorf("exit %d: %s", code, errOut)
		}
		if status(readFleet)["fra1-n1"]["drained"] != false {
			t.Error("the read token drained fra1-n1")
		}
		b.waitFor("the refusal in the audit log", 5*time.Second, func() bool {
			return strings.Contains(b.logs.String(), `logger=audit role=read`) &&
				strings.Contains(b.logs.String(), `action="POST /api/v1/node/drain" method=POST path=/api/v1/node/drain status=403 result=refused`)
		})
	})

	t.Run("drain and undrain one node through the fleet file", func(t *testing.T) {
		if out, errOut, code := ctl("-fleet", opFleet, "-node", "fra1-n1", "node", "drain"); code != 0 {
			t.Fatalf("exit %d: %s %s", code, out, errOut)
		}
		rows := status(readFleet)
		if rows["fra1-n1"]["drained"] != true || rows["ams1-n1"]["drained"] != false {
			t.Errorf("after drain: %v", rows)
		}
		if !strings.Contains(b.logs.String(), `logger=audit role=operate`) || strings.Contains(a.logs.String(), "node drain flag set") {
			t.Error("the operate drain is not in fra1-n1's audit log, or it reached ams1-n1")
		}
		if _, errOut, code := ctl("-fleet", opFleet, "-node", "fra1-n1", "node", "undrain"); code != 0 {
			t.Fatalf("undrain: exit %d: %s", code, errOut)
		}
		if status(readFleet)["fra1-n1"]["drained"] != false {
			t.Error("fra1-n1 still drained after undrain")
		}
		if strings.Contains(b.logs.String(), b.token) || strings.Contains(b.logs.String(), b.readToken) {
			t.Error("a token is in the log")
		}
	})

	t.Run("reads without a token are refused on every endpoint", func(t *testing.T) {
		for _, p := range []string{"/api/v1/backends", "/api/v1/node", "/api/v1/bgp", "/api/v1/stats", "/api/v1/rules",
			"/api/v1/blocks", "/api/v1/top", "/metrics"} {
			res, err := httpClientNoToken.Get(a.admin + p)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Errorf("GET %s without a token: %d", p, res.StatusCode)
			}
		}
	})

	t.Run("a killed node makes status fail, naming it", func(t *testing.T) {
		if err := a.cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		a.waitFor("ams1-n1's admin API to go", 5*time.Second, func() bool {
			res, err := httpClientNoToken.Get(a.admin + "/healthz")
			if err == nil {
				res.Body.Close()
			}
			return err != nil
		})
		out, errOut, code := ctl("-fleet", readFleet, "-timeout", "3s", "status")
		if code != 3 || !strings.Contains(errOut, "ams1-n1 (") || strings.Contains(errOut, "fra1-n1") {
			t.Errorf("exit %d, stderr %q", code, errOut)
		}
		if !strings.Contains(out, "ams1-n1  -     unreachable") && !strings.Contains(out, "unreachable") {
			t.Errorf("table:\n%s", out)
		}
		if !strings.Contains(out, "fra1-n1  fra1") {
			t.Errorf("the reachable node's row is missing:\n%s", out)
		}
	})
}
