package admin

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/config"
)

// TestFleetPage: node A's fleet endpoints read nodes B and C with the
// fleet file's tokens, and relay drains with the caller's token, which B
// alone judges.
func TestFleetPage(t *testing.T) {
	storeB := newStore(t)
	_, urlB := startWith(t, config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, "b-operate"),
		ReadTokenFile: writeToken(t, "b-read")}, Deps{Store: storeB, Node: config.Node{Name: "b", Site: "s2"}, Log: quietLog()})
	_, urlC := start(t, writeToken(t, "c-operate"), Deps{Node: config.Node{Name: "c"}})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "b.read"), []byte("b-read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fleetFile := filepath.Join(dir, "fleet.yaml")
	// c's entry has no token: its reads are refused, and its row says so.
	body := fmt.Sprintf("nodes:\n  - {name: b, admin: %q, token_file: b.read}\n  - {name: c, admin: %q}\n", urlB, urlC)
	if err := os.WriteFile(fleetFile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	_, urlA := startWith(t, config.Admin{Listen: "127.0.0.1:0", TokenFile: writeToken(t, testToken), FleetFile: fleetFile},
		Deps{Store: newStore(t), Log: slog.New(slog.NewTextHandler(logs, nil))})

	t.Run("rows need a token on this node and carry each node's figures", func(t *testing.T) {
		if r := do(t, "GET", urlA+"/api/v1/fleet", "", ""); r.code != 401 {
			t.Errorf("no token: %d", r.code)
		}
		var got struct {
			Nodes []map[string]any
		}
		do(t, "GET", urlA+"/api/v1/fleet", testToken, "").json(t, &got)
		if len(got.Nodes) != 2 || got.Nodes[0]["site"] != "s2" || got.Nodes[0]["backends_total"] != 3.0 || got.Nodes[0]["error"] != nil {
			t.Errorf("%v", got.Nodes)
		}
		if e, _ := got.Nodes[1]["error"].(string); !strings.Contains(e, "401") {
			t.Errorf("c without a token: %v", got.Nodes[1])
		}
	})
	t.Run("drain relays the caller's token: the read token is refused by b", func(t *testing.T) {
		r := do(t, "POST", urlA+"/api/v1/fleet/b/drain", "b-read", "")
		if r.code != 403 || storeB.Node(nil).Drained {
			t.Errorf("read token: %d %s", r.code, r.body)
		}
		if r := do(t, "POST", urlA+"/api/v1/fleet/b/drain", "b-operate", ""); r.code != 200 || !storeB.Node(nil).Drained {
			t.Errorf("operate token: %d %s", r.code, r.body)
		}
		if r := do(t, "POST", urlA+"/api/v1/fleet/b/undrain", "b-operate", ""); r.code != 200 || storeB.Node(nil).Drained {
			t.Errorf("undrain: %d %s", r.code, r.body)
		}
		if !strings.Contains(logs.String(), `action="POST /api/v1/fleet/{node}/drain" method=POST path=/api/v1/fleet/b/drain status=403 result=refused`) ||
			!strings.Contains(logs.String(), `path=/api/v1/fleet/b/drain status=200 result=ok`) {
			t.Errorf("audit log on A:\n%s", logs.String())
		}
	})
	t.Run("only nodes of the fleet file are reached", func(t *testing.T) {
		if r := do(t, "POST", urlA+"/api/v1/fleet/elsewhere/drain", testToken, ""); r.code != 404 {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
	t.Run("without a fleet file: 404 saying so", func(t *testing.T) {
		_, url := start(t, "", Deps{})
		if r := do(t, "GET", url+"/api/v1/fleet", "", ""); r.code != 404 || !strings.Contains(r.errorText(t), "admin.fleet_file") {
			t.Errorf("%d %s", r.code, r.body)
		}
	})
}
