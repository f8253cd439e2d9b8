package e2e

import (
	"net/http"
	"sync"
	"time"
)

// readTokens maps an admin API's host:port to its read token, so tests read
// a node's API as Prometheus or an operator would: with the read token.
var readTokens sync.Map

// readClient sends a node's read token with every request that has none.
var readClient = &http.Client{Transport: readTokenTransport{}}

type readTokenTransport struct{}

func (readTokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := readTokens.Load(r.URL.Host); ok && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// readGet is http.Get with the node's read token.
func readGet(url string) (*http.Response, error) { return readClient.Get(url) }

// httpClientNoToken sends no token: what an anonymous client sees.
var httpClientNoToken = http.Client{Timeout: 5 * time.Second}
