package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxAnswerBytes bounds one answer: a long backends list fits, a
// misdirected URL does not flood memory.
const maxAnswerBytes = 16 << 20

// statsWindow is how many of the latest per-second samples the q/s and
// SERVFAIL figures average over: long enough to smooth a burst, short
// enough to be "now".
const statsWindow = 10

// Status is one node's row in a fleet view.
type Status struct {
	Name               string   `json:"name"`
	Admin              string   `json:"admin"`
	Error              string   `json:"error,omitempty"`
	Site               string   `json:"site"`
	Serving            bool     `json:"serving"`
	Drained            bool     `json:"drained"`
	ShuttingDown       bool     `json:"shutting_down"`
	PrefixesAnnounced  int      `json:"prefixes_announced"`
	PrefixesConfigured int      `json:"prefixes_configured"`
	BackendsUsable     int      `json:"backends_usable"`
	BackendsTotal      int      `json:"backends_total"`
	QPS                float64  `json:"qps"`
	ServfailPct        *float64 `json:"servfail_pct"`
	Version            string   `json:"version"`
}

// Getter GETs an admin API path (with whatever token and TLS its owner
// set up) and decodes the JSON answer into v.
type Getter func(ctx context.Context, path string, v any) error

// Query reads one node's figures through get; any failure ends up in
// Error. ctx bounds all of the node's calls together.
func Query(ctx context.Context, n Node, get Getter) Status {
	row := Status{Name: n.Name, Admin: n.Admin}
	var node struct {
		Name         string `json:"name"`
		Site         string `json:"site"`
		Version      string `json:"version"`
		Drained      bool   `json:"drained"`
		ShuttingDown bool   `json:"shutting_down"`
	}
	var backends []struct {
		Usable bool `json:"usable"`
	}
	var bgp struct {
		Enabled  *bool `json:"enabled"`
		Prefixes []struct {
			Announced bool `json:"announced"`
		} `json:"prefixes"`
	}
	var stats json.RawMessage
	for _, call := range []struct {
		path string
		v    any
	}{{"/api/v1/node", &node}, {"/api/v1/backends", &backends}, {"/api/v1/bgp", &bgp}, {"/api/v1/stats", &stats}} {
		if err := get(ctx, call.path, call.v); err != nil {
			row.Error = err.Error()
			return row
		}
	}
	row.Site, row.Version, row.Drained, row.ShuttingDown = node.Site, node.Version, node.Drained, node.ShuttingDown
	if node.Name != "" && node.Name != n.Name {
		// The file and the node disagree: show both, the node's being
		// the name in its metrics.
		row.Name = n.Name + " (" + node.Name + ")"
	}
	row.BackendsTotal = len(backends)
	for _, b := range backends {
		if b.Usable {
			row.BackendsUsable++
		}
	}
	bgpOn := bgp.Enabled == nil || *bgp.Enabled
	row.PrefixesConfigured = len(bgp.Prefixes)
	for _, p := range bgp.Prefixes {
		if p.Announced {
			row.PrefixesAnnounced++
		}
	}
	if s, err := Summarize(stats); err == nil {
		row.QPS, row.ServfailPct = s.QPS, s.ServfailPct
	}
	// Serving: the node takes queries and, with BGP, draws them.
	row.Serving = !row.ShuttingDown && row.BackendsUsable > 0 && (!bgpOn || row.PrefixesAnnounced > 0)
	return row
}

// Stats is the average of the latest samples of GET /api/v1/stats.
type Stats struct {
	QPS         float64  `json:"qps"`
	ServfailPct *float64 `json:"servfail_pct"`
	P50MS       *float64 `json:"p50_ms,omitempty"`
	P99MS       *float64 `json:"p99_ms,omitempty"`
	Seconds     int      `json:"seconds"`
}

// Summarize averages the last statsWindow samples of a stats answer.
func Summarize(raw []byte) (Stats, error) {
	var st struct {
		Samples []struct {
			QPS      float64  `json:"qps"`
			ServFail float64  `json:"servfail"`
			P50MS    *float64 `json:"p50_ms"`
			P99MS    *float64 `json:"p99_ms"`
		} `json:"samples"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return Stats{}, err
	}
	s := st.Samples
	if len(s) > statsWindow {
		s = s[len(s)-statsWindow:]
	}
	var out Stats
	var q, sf float64
	for _, x := range s {
		q += x.QPS
		sf += x.ServFail
	}
	out.Seconds = len(s)
	if len(s) > 0 {
		out.QPS = q / float64(len(s))
		last := s[len(s)-1]
		out.P50MS, out.P99MS = last.P50MS, last.P99MS
	}
	if q > 0 {
		pct := 100 * sf / q
		out.ServfailPct = &pct
	}
	return out, nil
}

// Do sends one request to base+path with the Authorization header authz
// ("" sends none) and returns the status code and the body.
func Do(ctx context.Context, c *http.Client, method, base, path, authz string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("User-Agent", "anyfront-fleet")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	return res.StatusCode, raw, err
}

// Decode turns a GET's answer into v, or an error naming the path and
// the API's own message.
func Decode(path string, code int, raw []byte, v any) error {
	if code != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("GET %s: HTTP %d: %s", path, code, e.Error)
		}
		return fmt.Errorf("GET %s: HTTP %d", path, code)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	return nil
}
