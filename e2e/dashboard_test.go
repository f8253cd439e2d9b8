package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestDashboard drives the admin dashboard in headless Chromium (Debian's
// chromium, through chromedp: the test clicks buttons, types the token and
// reads the console, which --dump-dom cannot do) against a real node with
// two unbound backends under dnsperf load. Screenshots go to
// $ANYFRONT_ARTIFACTS when set, else to the test's temp dir; their paths
// are logged.
func TestDashboard(t *testing.T) {
	browser := testlab.RequireBinary(t, "chromium")
	testlab.RequireBinary(t, "unbound")
	testlab.RequireBinary(t, "dnsperf")
	artifacts := os.Getenv("ANYFRONT_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}

	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	peerPort, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// A BGP peer on loopback that never answers: the page shows the
	// session down and the prefix with its reason.
	n := startNode(t, pools(r1, r2)+"    cache: {size: 10000}\n"+fmt.Sprintf(`bgp:
  asn: 65001
  router_id: "198.51.100.2"
  peers: [{address: "127.0.0.1", asn: 65000, port: %d}]
  announce: [{prefix: "192.0.2.53/32", pools: [default], min_healthy: 1}]
`, peerPort))
	n.waitFor("both backends checked up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Checked && b["r1"].Health == "up" && b["r2"].Checked && b["r2"].Health == "up"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(browser),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1680, 1250),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Every console error, uncaught exception and browser-side error log
	// (CSP violations, failed loads) fails the test.
	var consoleMu sync.Mutex
	var consoleErrs []string
	if err := chromedp.Listen(bctx, func(ev any) {
		consoleMu.Lock()
		defer consoleMu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				consoleErrs = append(consoleErrs, "console."+string(ev.Type)+": "+strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := ""
			if d.Exception != nil {
				desc = d.Exception.Description
			}
			consoleErrs = append(consoleErrs, fmt.Sprintf("exception at %d:%d: %s %s", d.LineNumber+1, d.ColumnNumber+1, d.Text, desc))
		case *log.EventEntryAdded:
			// Expected failed loads: reads before the token is typed in
			// (401), the drain with the read token (403) and the one
			// with a wrong token (401).
			expected := ev.Entry.Source == log.EntrySourceNetwork &&
				(strings.Contains(ev.Entry.Text, "status of 401") || strings.Contains(ev.Entry.Text, "status of 403")) &&
				strings.Contains(ev.Entry.URL, "/api/v1/")
			if !expected && (ev.Entry.Level == log.EntryLevelError || ev.Entry.Level == log.EntryLevelWarning) {
				consoleErrs = append(consoleErrs, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	run := func(t *testing.T, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(t *testing.T, js string) string {
		t.Helper()
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	// waitJS polls a JavaScript condition in the page.
	waitJS := func(t *testing.T, what string, within time.Duration, js string) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			if ok, err := chromedp.Run(bctx, chromedp.Evaluate[bool](js)); err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %v waiting for %s (%s)", within, what, js)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	shot := func(t *testing.T, name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		path := filepath.Join(artifacts, name)
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", path)
	}
	row := func(name string) string {
		return fmt.Sprintf(`document.querySelector('#backends tr[data-backend=%q]')`, name)
	}
	cellText := func(t *testing.T, name, cls string) string {
		return eval(t, row(name)+`.querySelector('td.`+cls+`').textContent`)
	}

	// The node has tokens: the page asks for one before it shows
	// anything, and the read token is enough to read.
	answerBasicAuth(t, bctx, n.readToken) // the page itself needs a token (DESIGN)
	run(t, "load the dashboard with the read token", chromedp.Navigate(n.admin+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#token-bar`)),
		chromedp.SendKeys(chromedp.CSS(`#token-input`), n.readToken),
		chromedp.Click(chromedp.CSS(`#token-apply`)),
		chromedp.WaitVisible(chromedp.CSS(`#backends tbody tr[data-backend="r2"]`)))

	t.Run("the node's name and version are shown", func(t *testing.T) {
		host, _ := os.Hostname()
		waitJS(t, "the node's identity", 15*time.Second, `document.getElementById('node-id').textContent.startsWith(`+strconv.Quote(host)+`)`)
	})

	t.Run("backend names and states appear", func(t *testing.T) {
		for _, b := range []string{"r1", "r2"} {
			if h, a := cellText(t, b, "health"), cellText(t, b, "admin"); h != "up" || a != "auto" {
				t.Errorf("%s: health %q admin %q, want up and auto", b, h, a)
			}
		}
		if got := eval(t, `document.getElementById('v-backends').textContent`); got != "2/2" {
			t.Errorf("backends tile %q, want 2/2", got)
		}
		if got := eval(t, `document.getElementById('node-state').textContent`); got != "SERVING" {
			t.Errorf("node state %q, want SERVING", got)
		}
	})

	t.Run("numbers and charts change while queries are sent", func(t *testing.T) {
		// Unique names miss the cache; one query in three asks one of ten
		// hot names, which hit it.
		var names []string
		for i := range 6000 {
			if i%3 == 2 {
				names = append(names, fmt.Sprintf("hot%d.%s", i%10, testlab.RandZone))
			} else {
				names = append(names, fmt.Sprintf("d%d-%d.%s", i, time.Now().UnixNano()%100000, testlab.RandZone))
			}
		}
		wait, err := testlab.StartDnsperf(ctx, t.TempDir(), testlab.DnsperfOptions{
			Server: n.dns, Duration: 15 * time.Second, QPS: 400, Clients: 2, Names: names,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _, _ = wait() }()
		qps := func() float64 {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(eval(t, `document.getElementById('v-qps').textContent`), "k"), 64)
			return v
		}
		waitJS(t, "queries/s above 100", 10*time.Second,
			`parseFloat(document.getElementById('v-qps').textContent) > 100`)
		first := qps()
		path := eval(t, `(document.querySelector('#c-transport path') || {getAttribute: () => ''}).getAttribute('d')`)
		waitJS(t, "the transport chart to move", 15*time.Second,
			`(document.querySelector('#c-transport path') || {getAttribute: () => ''}).getAttribute('d') !== `+strconv.Quote(path))
		waitJS(t, "latency and cache tiles", 15*time.Second,
			`document.getElementById('v-p50').textContent !== '–' && document.getElementById('v-cache').textContent !== '–'`)
		waitJS(t, "backend qps in the table", 15*time.Second, `parseFloat(`+row("r1")+`.querySelector('td.qps').textContent) > 0`)
		t.Logf("queries/s on the page: %v, then %s; p50 %s p99 %s cache hit %s", first,
			eval(t, `document.getElementById('v-qps').textContent`), eval(t, `document.getElementById('v-p50').textContent`),
			eval(t, `document.getElementById('v-p99').textContent`), eval(t, `document.getElementById('v-cache').textContent`))
		// A few more seconds of chart, in the 5-minute window, while the
		// load still runs.
		run(t, "pick the 5m window", chromedp.Click(chromedp.CSS(`#win button[data-win="300"]`)))
		time.Sleep(3 * time.Second)
		shot(t, "dashboard-load.png")
	})

	t.Run("top clients and names list the load's client and its hot names", func(t *testing.T) {
		// The ten hot names get a third of the load, each far more than
		// any unique name: the busiest name is one of them.
		waitJS(t, "a hot name at the top of the names table", 15*time.Second,
			`/^hot[0-9]\.`+strings.ReplaceAll(testlab.RandZone, ".", `\.`)+`$/.test(`+
				`(document.querySelector('#top-names tbody td.key') || {}).textContent || '')`)
		if got := eval(t, `document.querySelector('#top-clients tbody td.key').textContent`); got != "127.0.0.1" {
			t.Errorf("busiest client %q, want 127.0.0.1 (dnsperf)", got)
		}
		if n := eval(t, `String(document.querySelectorAll('#top-names tbody tr').length)`); n != "10" {
			t.Errorf("%s rows in the names table, want 10", n)
		}
		run(t, "scroll to the top tables", chromedp.ScrollIntoView(chromedp.CSS(`#top-panel`)))
		shot(t, "dashboard-top.png")
	})

	t.Run("drain with the read token is refused and asks for the operate token", func(t *testing.T) {
		run(t, "click drain", chromedp.Click(chromedp.CSS(`#backends tr[data-backend="r1"] button.drain`)))
		waitJS(t, "a 403 message", 15*time.Second, `document.getElementById('msg').textContent.includes('403')`)
		run(t, "the token bar", chromedp.WaitVisible(chromedp.CSS(`#token-bar`)))
		if a := backendAdmin(t, n.admin, "r1"); a != "auto" {
			t.Errorf("r1 admin %q after the read token, want auto", a)
		}
	})

	t.Run("drain with a wrong token shows an error and changes nothing", func(t *testing.T) {
		run(t, "type a wrong token",
			chromedp.SendKeys(chromedp.CSS(`#token-input`), "not-the-token"),
			chromedp.Click(chromedp.CSS(`#token-apply`)))
		waitJS(t, "a 401 message", 15*time.Second, `document.getElementById('msg').className.includes('err') && `+
			`!document.getElementById('msg').hidden && document.getElementById('msg').textContent.includes('401')`)
		if msg := eval(t, `document.getElementById('msg').textContent`); !strings.Contains(msg, "401") {
			t.Errorf("message %q, want a 401 refusal", msg)
		}
		if a := backendAdmin(t, n.admin, "r1"); a != "auto" {
			t.Errorf("r1 admin %q after a wrong token, want auto", a)
		}
		shot(t, "dashboard-wrong-token.png")
	})

	t.Run("drain with the right token drains, undrain resumes", func(t *testing.T) {
		// The refused token was forgotten: the page asks again.
		run(t, "click drain", chromedp.Click(chromedp.CSS(`#backends tr[data-backend="r1"] button.drain`)),
			chromedp.WaitVisible(chromedp.CSS(`#token-bar`)),
			chromedp.SendKeys(chromedp.CSS(`#token-input`), n.token),
			chromedp.Click(chromedp.CSS(`#token-apply`)))
		waitUntil(t, "r1 drained in the API", 15*time.Second, func() bool { return backendAdmin(t, n.admin, "r1") == "drain" })
		waitJS(t, "r1 drained on the page", 15*time.Second, row("r1")+`.querySelector('td.admin').textContent === 'drain'`)
		if a := backendAdmin(t, n.admin, "r2"); a != "auto" {
			t.Errorf("r2 admin %q, want auto: only r1 was drained", a)
		}
		shot(t, "dashboard-drained.png")
		// The token is kept in memory: undrain needs no second prompt.
		run(t, "click undrain", chromedp.Click(chromedp.CSS(`#backends tr[data-backend="r1"] button.undrain`)))
		waitUntil(t, "r1 undrained in the API", 15*time.Second, func() bool { return backendAdmin(t, n.admin, "r1") == "auto" })
		if eval(t, `String(document.getElementById('token-bar').hidden)`) != "true" {
			t.Error("the page asked for the token again")
		}
	})

	t.Run("BGP peers and prefixes appear, node drain takes two clicks", func(t *testing.T) {
		waitJS(t, "the BGP tables", 15*time.Second, `document.querySelectorAll('#peers tbody tr').length === 1 && `+
			`document.querySelectorAll('#prefixes tbody tr').length === 1`)
		if got := eval(t, `document.querySelector('#peers tbody tr').textContent`); !strings.Contains(got, "127.0.0.1") || !strings.Contains(got, "65000") {
			t.Errorf("peer row %q", got)
		}
		if got := eval(t, `document.querySelector('#prefixes tbody tr').textContent`); !strings.Contains(got, "192.0.2.53/32") {
			t.Errorf("prefix row %q", got)
		}
		run(t, "click drain node once", chromedp.Click(chromedp.CSS(`#node-drain`)))
		time.Sleep(300 * time.Millisecond)
		if nodeDrained(t, n.admin) {
			t.Fatal("one click drained the node")
		}
		run(t, "click drain node again", chromedp.Click(chromedp.CSS(`#node-drain`)))
		waitUntil(t, "the node drained in the API", 15*time.Second, func() bool { return nodeDrained(t, n.admin) })
		waitJS(t, "the page shows the node drained", 15*time.Second, `document.getElementById('node-state').textContent === 'NODE DRAINED'`)
		shot(t, "dashboard-node-drained.png")
		run(t, "undrain node", chromedp.Click(chromedp.CSS(`#node-undrain`)), chromedp.Click(chromedp.CSS(`#node-undrain`)))
		waitUntil(t, "the node undrained in the API", 15*time.Second, func() bool { return !nodeDrained(t, n.admin) })
	})

	t.Run("the token is not stored by the page", func(t *testing.T) {
		if got := eval(t, `JSON.stringify([localStorage.length, sessionStorage.length, document.cookie])`); got != `[0,0,""]` {
			t.Errorf("page storage %s, want nothing", got)
		}
	})

	consoleMu.Lock()
	defer consoleMu.Unlock()
	if len(consoleErrs) > 0 {
		t.Errorf("browser console errors:\n%s", strings.Join(consoleErrs, "\n"))
	}
}

// nodeDrained reads GET /api/v1/node.
func nodeDrained(t *testing.T, admin string) bool {
	t.Helper()
	resp, err := readGet(admin + "/api/v1/node")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Drained bool `json:"drained"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Drained
}

// backendAdmin reads one backend's admin state from GET /api/v1/backends.
func backendAdmin(t *testing.T, admin, name string) string {
	t.Helper()
	resp, err := readGet(admin + "/api/v1/backends/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Admin string `json:"admin"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Admin
}

// waitUntil polls cond until it holds, failing t after within.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
