package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/anyfront/anyfront/internal/fleet"
)

// maxParallelNodes bounds how many nodes status asks at once: a fleet of
// hundreds does not open hundreds of connections from an operator's laptop.
const maxParallelNodes = 32

// nodeStatus is one row of `anyfrontctl -fleet FILE status`.
type nodeStatus = fleet.Status

// fleetStatus asks every node in parallel, each within o.timeout, and
// prints one row per node in the file's order. It exits non-zero naming
// every node that could not be read.
func fleetStatus(o options, nodes []fleet.Node, stdout, stderr io.Writer) int {
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

// queryNode reads one node's figures within o.timeout for all its calls:
// a slow node costs at most that, whatever it answers.
func queryNode(o options, n fleet.Node) nodeStatus {
	c, err := newClient(o)
	if err != nil {
		return nodeStatus{Name: n.Name, Admin: n.Admin, Error: err.Error()}
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	return fleet.Query(ctx, n, c.fetch)
}

// fetch GETs path into v with the token, within ctx.
func (c *client) fetch(ctx context.Context, path string, v any) error {
	authz := ""
	if c.tokenFile != "" {
		tok, err := readToken(c.tokenFile)
		if err != nil {
			return fmt.Errorf("token_file: %v", err)
		}
		authz = "Bearer " + tok
	}
	code, raw, err := fleet.Do(ctx, c.http, "GET", c.base, path, authz)
	if err != nil {
		return fmt.Errorf("%v%s", unwrapURLError(err), tlsHint(err))
	}
	return fleet.Decode(path, code, raw, v)
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
