package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// maxParallelNodes bounds how many nodes status asks at once: a fleet of
// hundreds does not open hundreds of connections from an operator's laptop.
const maxParallelNodes = 32

// nodeStatus is one row of `anyfrontctl -fleet FILE status`.
type nodeStatus struct {
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

// fleetStatus asks every node in parallel, each within o.timeout, and
// prints one row per node in the file's order. It exits non-zero naming
// every node that could not be read.
func fleetStatus(o options, nodes []fleetNode, stdout, stderr io.Writer) int {
	rows := make([]nodeStatus, len(nodes))
	sem := make(chan struct{}, maxParallelNodes)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			rows[i] = queryNode(o.forNode(n), n)
		})
	}
	wg.Wait()

	var failed []string
	for _, r := range rows {
		if r.Error != "" {
			failed = append(failed, r.Name+" ("+r.Error+")")
		}
	}
	if o.json {
		b, _ := json.MarshalIndent(rows, "", "  ")
		fmt.Fprintln(stdout, string(b))
	} else {
		tw := newTable(stdout)
		fmt.Fprintln(tw, "NODE\tSITE\tSERVING\tDRAINED\tPREFIXES\tBACKENDS\tQ/S\tSERVFAIL\tVERSION")
		for _, r := range rows {
			if r.Error != "" {
				fmt.Fprintf(tw, "%s\t-\tunreachable\t-\t-\t-\t-\t-\t-\n", r.Name)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d/%d\t%.1f\t%s\t%s\n", r.Name, dash(r.Site), yesNo(r.Serving),
				yesNo(r.Drained), r.PrefixesAnnounced, r.PrefixesConfigured, r.BackendsUsable, r.BackendsTotal,
				r.QPS, pctText(r.ServfailPct), r.Version)
		}
		tw.Flush()
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "anyfrontctl: cannot read %d of %d nodes: %s\n", len(failed), len(rows), strings.Join(failed, "; "))
		return exitUnreachable
	}
	return exitOK
}

// queryNode reads one node's figures; any failure ends up in Error.
func queryNode(o options, n fleetNode) nodeStatus {
	row := nodeStatus{Name: n.Name, Admin: n.Admin}
	c, err := newClient(o)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	defer c.close()
	// One deadline for all of the node's calls: a slow node costs at most
	// -timeout, whatever it answers.
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()

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
		if err := c.fetch(ctx, call.path, call.v); err != nil {
			row.Error = err.Error()
			return row
		}
	}
	row.Site, row.Version, row.Drained, row.ShuttingDown = node.Site, node.Version, node.Drained, node.ShuttingDown
	if node.Name != "" && node.Name != n.Name {
		// The file and the node disagree: show what the node says, as
		// it is the name in its metrics.
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
	if s, err := summarizeStats(stats); err == nil {
		row.QPS, row.ServfailPct = s.QPS, s.ServfailPct
	}
	// Serving: the node takes queries and, with BGP, draws them.
	row.Serving = !row.ShuttingDown && row.BackendsUsable > 0 && (!bgpOn || row.PrefixesAnnounced > 0)
	return row
}

// fetch GETs path into v with the token, within ctx.
func (c *client) fetch(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "anyfrontctl")
	if c.tokenFile != "" {
		tok, err := readToken(c.tokenFile)
		if err != nil {
			return fmt.Errorf("token_file: %v", err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%v%s", unwrapURLError(err), tlsHint(err))
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswerBytes))
	if err != nil {
		return unwrapURLError(err)
	}
	if res.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("GET %s: HTTP %d: %s", path, res.StatusCode, e.Error)
		}
		return fmt.Errorf("GET %s: HTTP %d", path, res.StatusCode)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("GET %s: %v", path, err)
	}
	return nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
