package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestFleetPage drives node A's dashboard in headless Chromium: its fleet
// panel (admin.fleet_file) lists A and B, and B's drain and undrain
// buttons reach B through A with B's operate token typed in the page.
func TestFleetPage(t *testing.T) {
	browser := testlab.RequireBinary(t, "chromium")
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	b := startNode(t, "node: {name: fra1-n1, site: fra1}\n"+pools(r1, r2))

	dir := t.TempDir()
	portA, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, b.readTokenFile, filepath.Join(dir, "b.read"))
	fleetFile := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(fleetFile, []byte(fmt.Sprintf("nodes:\n  - {name: ams1-n1, admin: \"http://127.0.0.1:%d\", token_file: a.read}\n"+
		"  - {name: fra1-n1, admin: %q, token_file: b.read}\n", portA, b.admin)), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startNodeOpts(t, nodeOpts{adminPort: portA, adminExtra: fmt.Sprintf(", fleet_file: %q", fleetFile)},
		"node: {name: ams1-n1, site: ams1}\n"+pools(r1, r2))
	// A's own row is read with A's read token, read at each call.
	copyFile(t, a.readTokenFile, filepath.Join(dir, "a.read"))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(browser), chromedp.Headless, chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1680, 1250))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	waitJS := func(what string, js string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js)); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%s)", what, js)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	row := func(name string) string {
		return fmt.Sprintf(`document.querySelector('#fleet tr[data-node=%q]')`, name)
	}
	cell := func(name, cls string) string { return row(name) + `.querySelector('td.` + cls + `').textContent` }

	answerBasicAuth(t, bctx, a.readToken) // the page itself needs a token (DESIGN)
	run("load A's dashboard with A's read token", chromedp.Navigate(a.admin+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#token-bar`)),
		chromedp.SendKeys(chromedp.CSS(`#token-input`), a.readToken),
		chromedp.Click(chromedp.CSS(`#token-apply`)),
		chromedp.WaitVisible(chromedp.CSS(`#fleet-panel`)))
	waitJS("both fleet rows with their sites", row("ams1-n1")+` && `+row("fra1-n1")+` && `+
		cell("ams1-n1", "site")+` === 'ams1' && `+cell("fra1-n1", "site")+` === 'fra1' && `+cell("fra1-n1", "backends")+` === '2/2'`)

	t.Run("drain B from A's page with B's operate token, undrain without a second prompt", func(t *testing.T) {
		run("click drain on B's row", chromedp.Click(chromedp.CSS(`#fleet tr[data-node="fra1-n1"] button.drain`)),
			chromedp.WaitVisible(chromedp.CSS(`#token-bar`)),
			chromedp.SendKeys(chromedp.CSS(`#token-input`), b.token),
			chromedp.Click(chromedp.CSS(`#token-apply`)))
		waitUntil(t, "B drained in its own API", 5*time.Second, func() bool { return nodeDrained(t, b.admin) })
		if nodeDrained(t, a.admin) {
			t.Error("A was drained too")
		}
		waitJS("B's row shows drained", cell("fra1-n1", "drained")+` === 'yes'`)
		run("click undrain on B's row", chromedp.Click(chromedp.CSS(`#fleet tr[data-node="fra1-n1"] button.undrain`)))
		waitUntil(t, "B undrained", 5*time.Second, func() bool { return !nodeDrained(t, b.admin) })
		// A's read token still reads A: B's token went to B's row only.
		waitJS("B's row back in service", cell("fra1-n1", "drained")+` === 'no'`)
	})
	t.Run("the relayed calls are in A's audit log", func(t *testing.T) {
		waitUntil(t, "audit lines", 5*time.Second, func() bool {
			l := a.logs.String()
			return strings.Contains(l, `path=/api/v1/fleet/fra1-n1/drain status=200 result=ok`) &&
				strings.Contains(l, `path=/api/v1/fleet/fra1-n1/undrain status=200 result=ok`)
		})
	})
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
