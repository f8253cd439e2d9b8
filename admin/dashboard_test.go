package admin

import (
	"crypto/sha256"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"
)

// TestDashboardPage checks the assembled page: stylesheet and script
// inlined, the policy allowing exactly them by hash, and nothing loaded
// from anywhere else.
func TestDashboardPage(t *testing.T) {
	page := string(dashboardHTML)
	for _, ph := range []string{"/*STYLE*/", "/*SCRIPT*/"} {
		if strings.Contains(page, ph) {
			t.Errorf("placeholder %s left in the page", ph)
		}
	}
	for _, tag := range []string{"style", "script"} {
		m := regexp.MustCompile(`(?s)<`+tag+`>(.*?)</`+tag+`>`).FindAllStringSubmatch(page, -1)
		if len(m) != 1 {
			t.Fatalf("%d inline <%s> elements, want 1", len(m), tag)
		}
		sum := sha256.Sum256([]byte(m[0][1]))
		want := tag + "-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(dashboardCSP, want) {
			t.Errorf("policy %q lacks %q", dashboardCSP, want)
		}
	}
	if strings.Contains(dashboardCSP, "unsafe") {
		t.Errorf("policy allows unsafe sources: %q", dashboardCSP)
	}
	for _, bad := range []string{"http://", "https://", "//cdn", "@import", "src=\"", "localStorage", "sessionStorage", "document.cookie"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q: it must load nothing from outside and store no token", bad)
		}
	}
	for _, api := range []string{"api/v1/stats", "api/v1/backends", "api/v1/node", "api/v1/bgp"} {
		if !strings.Contains(page, api) {
			t.Errorf("the page does not read %s", api)
		}
	}
}
