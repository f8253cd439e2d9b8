package e2e

import (
	"context"
	"testing"

	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/chromedp"
)

// answerBasicAuth makes the browser answer the dashboard page's HTTP Basic
// challenge with token as the password, as an operator types it into the
// browser's prompt. Every other request goes on untouched.
func answerBasicAuth(t *testing.T, bctx context.Context, token string) {
	t.Helper()
	if err := chromedp.Listen(bctx, func(ev any) {
		switch ev := ev.(type) {
		case *fetch.EventRequestPaused:
			go chromedp.Call(bctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		case *fetch.EventAuthRequired:
			go chromedp.Call(bctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID,
				AuthChallengeResponse: &fetch.AuthChallengeResponse{
					Response: fetch.AuthChallengeResponseResponseProvideCredentials, Username: "operator", Password: token,
				}})
		}
	}); err != nil {
		t.Fatalf("listen: %v", err)
	}
	yes := true
	if _, err := chromedp.Call(bctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: &yes}); err != nil {
		t.Fatalf("fetch.enable: %v", err)
	}
}
