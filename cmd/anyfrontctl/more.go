package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/anyfront/anyfront/internal/fleet"
)

// parseMore maps the read-mostly commands (rules, blocks, top, stats) to
// API calls; ok is false when w[0] is none of them.
func parseMore(w []string) (cmd command, ok bool, err error) {
	switch w[0] {
	case "rules":
		if len(w) != 1 {
			return command{}, true, errors.New("usage: anyfrontctl rules")
		}
		return command{method: "GET", path: "/api/v1/rules", show: showGeneric}, true, nil
	case "blocks":
		switch {
		case len(w) == 1:
			return command{method: "GET", path: "/api/v1/blocks", show: showGeneric}, true, nil
		case len(w) == 3 && w[1] == "lift":
			// The API takes the slash raw: escaping it would make the
			// prefix one path segment the mux still accepts, but raw
			// is what the docs show.
			return command{method: "DELETE", path: "/api/v1/blocks/" + w[2], mutating: true, show: showGeneric}, true, nil
		}
		return command{}, true, errors.New("usage: anyfrontctl blocks [lift PREFIX]")
	case "top":
		switch len(w) {
		case 1:
			return command{method: "GET", path: "/api/v1/top", show: showTop}, true, nil
		case 2:
			n, err := strconv.Atoi(w[1])
			if err != nil || n < 1 || n > 100 {
				return command{}, true, fmt.Errorf("top %q: N must be a whole number from 1 to 100", w[1])
			}
			return command{method: "GET", path: "/api/v1/top?n=" + w[1], show: showTop}, true, nil
		}
		return command{}, true, errors.New("usage: anyfrontctl top [N]")
	case "stats":
		if len(w) != 1 {
			return command{}, true, errors.New("usage: anyfrontctl stats")
		}
		return command{method: "GET", path: "/api/v1/stats", show: showStats}, true, nil
	}
	return command{}, false, nil
}

// showGeneric prints a list of objects as a table, anything else as
// showBGP does.
func showGeneric(w io.Writer, raw []byte) error {
	v, err := decodeOrdered(raw)
	if err != nil {
		return err
	}
	if l, ok := v.([]any); ok {
		if len(l) == 0 {
			_, err := fmt.Fprintln(w, "none")
			return err
		}
		if isObjects(l) {
			printObjects(w, l)
			return nil
		}
	}
	return showBGP(w, raw)
}

// showTop prints the busiest clients and names as two tables.
func showTop(w io.Writer, raw []byte) error {
	var t struct {
		Enabled bool `json:"enabled"`
		Sample  int  `json:"sample"`
		Window  int  `json:"window_seconds"`
		Clients []struct {
			Client  string `json:"client"`
			Queries uint64 `json:"queries"`
		} `json:"clients"`
		Names []struct {
			Name    string `json:"name"`
			Queries uint64 `json:"queries"`
		} `json:"names"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return err
	}
	if !t.Enabled {
		_, err := fmt.Fprintln(w, "top lists are off on this node (top.sample is 0)")
		return err
	}
	fmt.Fprintf(w, "last %d s, 1 query in %d counted\n\n", t.Window, t.Sample)
	tw := newTable(w)
	fmt.Fprintln(tw, "CLIENT\tQUERIES")
	for _, c := range t.Clients {
		fmt.Fprintf(tw, "%s\t%d\n", c.Client, c.Queries)
	}
	fmt.Fprintln(tw, "\t")
	fmt.Fprintln(tw, "NAME\tQUERIES")
	for _, n := range t.Names {
		fmt.Fprintf(tw, "%s\t%d\n", n.Name, n.Queries)
	}
	return tw.Flush()
}

func showStats(w io.Writer, raw []byte) error {
	s, err := fleet.Summarize(raw)
	if err != nil {
		return err
	}
	ms := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatFloat(*v, 'f', 2, 64) + " ms"
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "queries/s:\t%.1f\t(average of the last %d s)\n", s.QPS, s.Seconds)
	fmt.Fprintf(tw, "SERVFAIL:\t%s\n", pctText(s.ServfailPct))
	fmt.Fprintf(tw, "latency p50:\t%s\n", ms(s.P50MS))
	fmt.Fprintf(tw, "latency p99:\t%s\n", ms(s.P99MS))
	return tw.Flush()
}

func pctText(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', 2, 64) + " %"
}
