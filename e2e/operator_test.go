package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Issue 16, points 6 and 7: reloads apply whole or not at all, and
// operator drains survive a restart.

// deadPools is a pool whose backends answer nothing: these tests are about
// the operator's side, not about answers.
const deadPools = "pools:\n  default:\n    backends:\n      - {name: r1, address: \"127.0.0.1:9\"}\n      - {name: r2, address: \"127.0.0.1:10\"}\n"

// sampleText returns the value of one sample line ("name{labels}") of /metrics.
func (n *node) sampleText(sample string) string {
	n.t.Helper()
	req, _ := http.NewRequest("GET", n.admin+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for line := range strings.SplitSeq(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

type reloadAnswer struct {
	Status   string   `json:"status"`
	Warnings []string `json:"warnings"`
	Error    string   `json:"error"`
	Errors   []string `json:"errors"`
}

func (n *node) reloadAPI() (int, reloadAnswer) {
	n.t.Helper()
	code, body := n.post("/api/v1/reload", n.token)
	var a reloadAnswer
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		n.t.Fatalf("reload answer %d %q: %v", code, body, err)
	}
	return code, a
}

func TestReloadAppliesWholeOrNotAtAll(t *testing.T) {
	n := startNode(t, deadPools)
	lines := strings.SplitN(mustRead(t, n.cfgPath), "\n", 3)
	listenLine, adminLine := lines[0], lines[1]
	dir := filepath.Dir(n.cfgPath)
	missingToken, missingCert := filepath.Join(dir, "gone.token"), filepath.Join(dir, "gone.crt")
	write := func(text string) {
		t.Helper()
		if err := os.WriteFile(n.cfgPath+".tmp", []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(n.cfgPath+".tmp", n.cfgPath); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a missing token file and DoT certificate: 400 with both reasons, nothing applied", func(t *testing.T) {
		write(fmt.Sprintf("listen:\n  - {address: %q}\n  - {address: \"127.0.0.1:0\", protocol: dot, tls: {cert: %q, key: %q}}\n%s\n%s",
			n.dns, missingCert, missingCert, strings.Replace(adminLine, n.tokenFile, missingToken, 1), deadPools))
		code, a := n.reloadAPI()
		if code != 400 || len(a.Errors) != 2 {
			t.Fatalf("reload: %d %+v, want 400 with two reasons", code, a)
		}
		want := []string{
			n.cfgPath + ":3: listen[1].tls: cert " + missingCert + ": no such file or directory",
			n.cfgPath + ":4: admin.token_file: " + missingToken + ": no such file or directory",
		}
		for i, w := range want {
			if a.Errors[i] != w {
				t.Errorf("reason %d = %q, want %q", i, a.Errors[i], w)
			}
		}
		// The old token still works: the admin config was not half applied.
		if code, _ := n.reloadAPI(); code != 400 {
			t.Errorf("second reload with the old token: %d, want 400 (401 would mean the token was dropped)", code)
		}
		if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		n.waitFor("three failed reloads counted", 5*time.Second, func() bool {
			return n.sampleText(`anyfront_config_reloads_total{result="failure"}`) == "3"
		})
		if v := n.sampleText(`anyfront_config_reloads_total{result="success"}`); v != "0" {
			t.Errorf("successful reloads = %q, want 0", v)
		}
	})

	t.Run("a change that needs a restart applies the rest and says so", func(t *testing.T) {
		before := n.sampleText("anyfront_config_last_reload_success_timestamp_seconds")
		other, err := testlab.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		newAdmin := strings.Replace(adminLine, strings.TrimPrefix(n.admin, "http://"), fmt.Sprintf("127.0.0.1:%d", other), 1)
		write(listenLine + "\n" + newAdmin + "\n" + strings.Replace(deadPools, "r2, address", "r3, address", 1))
		code, a := n.reloadAPI()
		if code != 200 || a.Status != "reloaded" || len(a.Warnings) != 1 || !strings.Contains(a.Warnings[0], "admin.listen changed") {
			t.Fatalf("reload: %d %+v, want 200 with the admin.listen warning", code, a)
		}
		if _, ok := n.backends()["r3"]; !ok {
			t.Errorf("the rest of the config was not applied: %v", n.backends())
		}
		if v := n.sampleText(`anyfront_config_reloads_total{result="success"}`); v != "1" {
			t.Errorf("successful reloads = %q, want 1", v)
		}
		if after := n.sampleText("anyfront_config_last_reload_success_timestamp_seconds"); after == "" || after == before {
			t.Errorf("last success timestamp %q -> %q, want it moved", before, after)
		}
		if !strings.Contains(n.logs.String(), "admin.listen changed") {
			t.Errorf("warning not logged")
		}
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// kill stops the node the hard way (a crash, an OOM kill) and waits.
func (n *node) kill() {
	n.t.Helper()
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.t.Fatal("anyfront did not exit after SIGKILL")
	}
}

func (n *node) nodeDrained() bool {
	n.t.Helper()
	req, _ := http.NewRequest("GET", n.admin+"/api/v1/node", nil)
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Drained bool }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		n.t.Fatal(err)
	}
	return v.Drained
}

func TestDrainsSurviveRestart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	n := startNode(t, deadPools+fmt.Sprintf("node: {state_file: %q}\n", stateFile))
	for _, p := range []string{"/api/v1/backends/r1/drain", "/api/v1/node/drain"} {
		if code, body := n.post(p, n.token); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	n.waitFor("both drains in the state file", 5*time.Second, func() bool {
		b, _ := os.ReadFile(stateFile)
		return strings.Contains(string(b), `"node_drained": true`) && strings.Contains(string(b), `"r1": "drain"`)
	})

	n.kill()
	n.launch()
	if b := n.backends(); b["r1"].Admin != "drain" || b["r2"].Admin != "auto" {
		t.Errorf("after a restart: r1 %q r2 %q, want drain and auto", b["r1"].Admin, b["r2"].Admin)
	}
	if !n.nodeDrained() {
		t.Error("after a restart the node is not drained")
	}
	if !strings.Contains(n.logs.String(), "node starts drained") {
		t.Error("start-up does not say the node starts drained")
	}

	// Undrain is kept too.
	for _, p := range []string{"/api/v1/backends/r1/undrain", "/api/v1/node/undrain"} {
		if code, body := n.post(p, n.token); code != 200 {
			t.Fatalf("%s: %d %s", p, code, body)
		}
	}
	n.waitFor("undrains in the state file", 5*time.Second, func() bool {
		b, _ := os.ReadFile(stateFile)
		return strings.Contains(string(b), `"node_drained": false`) && !strings.Contains(string(b), `"r1"`)
	})
	n.kill()

	t.Run("a corrupt state file stops the start with its name", func(t *testing.T) {
		if err := os.WriteFile(stateFile, []byte(`{"version": 1, "node_drained": maybe}`), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(binDir, "anyfront"), "-config", n.cfgPath)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), stateFile) || !strings.Contains(string(out), "corrupt state file") {
			t.Errorf("exit %v, want 1 naming %s:\n%s", err, stateFile, out)
		}
	})
}
