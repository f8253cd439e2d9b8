package admin

import (
	_ "embed"
	"net/http"
	"strconv"
)

// dashboardHTML is a self-contained page (no external assets, so it works
// on an isolated management network) that polls GET /api/v1/backends.
//
//go:embed dashboard.html
var dashboardHTML []byte

// dashboardCSP lets the page run only its own inline script and style and
// talk only to this server: it renders backend names and reasons, which
// must never become markup.
const dashboardCSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func serveDashboard(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", dashboardCSP)
	w.Header().Set("Content-Length", strconv.Itoa(len(dashboardHTML)))
	_, _ = w.Write(dashboardHTML)
}
