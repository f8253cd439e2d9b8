package admin

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"net/http"
	"strconv"
)

// ui holds the dashboard: one page, its stylesheet and its scripts. They
// are inlined into a single document when the package loads, so the page
// needs nothing from outside (it works on an isolated management network)
// and its Content-Security-Policy can allow exactly that script and that
// style by hash, and nothing else.
//
//go:embed ui/index.html ui/dashboard.css ui/chart.js ui/fleet.js ui/dashboard.js
var ui embed.FS

// dashboardScripts are joined, in this order, into the page's one inline
// script (one hash in the policy): each defines what the next ones use.
var dashboardScripts = []string{"ui/chart.js", "ui/fleet.js", "ui/dashboard.js"}

// dashboardHTML and dashboardCSP are the page as served and its policy.
var dashboardHTML, dashboardCSP = buildDashboard()

// buildDashboard inlines the stylesheet and script into the page and
// computes the policy. The placeholders are fixed strings in our own
// embedded files, so a mismatch is a build mistake: panic at init, which
// every test of the package catches.
func buildDashboard() ([]byte, string) {
	read := func(name string) []byte {
		b, err := ui.ReadFile(name)
		if err != nil {
			panic("admin: dashboard asset: " + err.Error())
		}
		return b
	}
	page, css := read("ui/index.html"), read("ui/dashboard.css")
	var parts [][]byte
	for _, name := range dashboardScripts {
		parts = append(parts, read(name))
	}
	js := bytes.Join(parts, []byte("\n"))
	for _, ph := range []string{"/*STYLE*/", "/*SCRIPT*/"} {
		if bytes.Count(page, []byte(ph)) != 1 {
			panic("admin: dashboard page must hold " + ph + " exactly once")
		}
	}
	page = bytes.Replace(page, []byte("/*STYLE*/"), css, 1)
	page = bytes.Replace(page, []byte("/*SCRIPT*/"), js, 1)
	hash := func(b []byte) string {
		sum := sha256.Sum256(b)
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	// The page renders backend names, reasons and BGP state, which must
	// never become markup or script; it talks only to this server.
	csp := "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
		"; img-src data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	return page, csp
}

func serveDashboard(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", dashboardCSP)
	w.Header().Set("Content-Length", strconv.Itoa(len(dashboardHTML)))
	_, _ = w.Write(dashboardHTML)
}
