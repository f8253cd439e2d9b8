package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"
)

// The CLI decodes only the fields it prints, into its own types: it is a
// client of the HTTP contract, not of the admin package's Go types, so a
// change that breaks the contract breaks its tests.

type backend struct {
	Name        string  `json:"name"`
	Pool        string  `json:"pool"`
	Address     string  `json:"address"`
	Health      string  `json:"health"`
	Admin       string  `json:"admin"`
	Weight      int     `json:"weight"`
	Outstanding int64   `json:"outstanding"`
	QPS         float64 `json:"qps"`
	LatencyMS   float64 `json:"latency_ms"`
	Reason      string  `json:"reason"`
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func showBackends(w io.Writer, raw []byte) error {
	var bs []backend
	if err := json.Unmarshal(raw, &bs); err != nil {
		return err
	}
	if len(bs) == 0 {
		_, err := fmt.Fprintln(w, "no backends configured")
		return err
	}
	tw := newTable(w)
	fmt.Fprintln(tw, "NAME\tPOOL\tADDRESS\tHEALTH\tADMIN\tWEIGHT\tOUTSTANDING\tQPS\tLATENCY_MS\tREASON")
	for _, b := range bs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t%.2f\t%s\n",
			b.Name, b.Pool, b.Address, b.Health, b.Admin, b.Weight, b.Outstanding, b.QPS, b.LatencyMS, b.Reason)
	}
	return tw.Flush()
}

func showChange(w io.Writer, raw []byte) error {
	var c struct {
		Name    string `json:"name"`
		Admin   string `json:"admin"`
		Weight  int    `json:"weight"`
		Changed bool   `json:"changed"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return err
	}
	suffix := ""
	if !c.Changed {
		suffix = " (unchanged)"
	}
	_, err := fmt.Fprintf(w, "%s: admin %s, weight %d%s\n", c.Name, c.Admin, c.Weight, suffix)
	return err
}

func showNode(w io.Writer, raw []byte) error {
	var n struct {
		Drained      bool   `json:"drained"`
		ShuttingDown bool   `json:"shutting_down"`
		Since        string `json:"since"`
		Changed      *bool  `json:"changed"`
		Note         string `json:"note"`
	}
	if err := json.Unmarshal(raw, &n); err != nil {
		return err
	}
	st := "in service"
	switch {
	case n.ShuttingDown:
		st = "shutting down"
	case n.Drained:
		st = "drained"
	}
	line := "node: " + st
	if n.Changed != nil && !*n.Changed {
		line += " (unchanged)"
	} else if t, err := time.Parse(time.RFC3339Nano, n.Since); err == nil {
		line += " since " + t.Local().Format("2006-01-02 15:04:05 MST")
	}
	fmt.Fprintln(w, line)
	if n.Note != "" {
		fmt.Fprintln(w, "note: "+n.Note)
	}
	return nil
}

func showReload(w io.Writer, _ []byte) error {
	_, err := fmt.Fprintln(w, "reloaded")
	return err
}

func showPurge(w io.Writer, raw []byte) error {
	var p struct {
		Purged int    `json:"purged"`
		Name   string `json:"name"`
		Note   string `json:"note"`
	}
	if err := json.Unmarshal(raw, &p); err != nil {
		return err
	}
	if p.Note != "" {
		_, err := fmt.Fprintf(w, "purged 0 entries: %s\n", p.Note)
		return err
	}
	under := ""
	if p.Name != "" {
		under = " under " + p.Name
	}
	_, err := fmt.Fprintf(w, "purged %d entries%s\n", p.Purged, under)
	return err
}

// showBGP prints whatever the BGP status holds, since its shape belongs to
// the bgp package: scalars as "key: value" lines, lists of objects as
// tables whose columns follow the JSON's own key order.
func showBGP(w io.Writer, raw []byte) error {
	v, err := decodeOrdered(raw)
	if err != nil {
		return err
	}
	top, ok := v.(object)
	if !ok {
		_, err := fmt.Fprintln(w, cellText(v))
		return err
	}
	if e, ok := top.get("enabled"); ok && e == false && len(top) == 1 {
		_, err := fmt.Fprintln(w, "BGP is not configured")
		return err
	}
	tw := newTable(w)
	var lists []field
	for _, f := range top {
		if l, ok := f.val.([]any); ok && len(l) > 0 && isObjects(l) {
			lists = append(lists, f)
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", f.key, cellText(f.val))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range lists {
		fmt.Fprintf(w, "\n%s\n", f.key)
		printObjects(w, f.val.([]any))
	}
	return nil
}

func isObjects(l []any) bool {
	for _, e := range l {
		if _, ok := e.(object); !ok {
			return false
		}
	}
	return true
}

// printObjects prints objects as a table; the columns are every key seen,
// in order of first appearance.
func printObjects(w io.Writer, l []any) {
	var cols []string
	seen := map[string]bool{}
	for _, e := range l {
		for _, f := range e.(object) {
			if !seen[f.key] {
				seen[f.key] = true
				cols = append(cols, f.key)
			}
		}
	}
	tw := newTable(w)
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, upper(c))
	}
	fmt.Fprintln(tw)
	for _, e := range l {
		o := e.(object)
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			if v, ok := o.get(c); ok {
				fmt.Fprint(tw, cellText(v))
			} else {
				fmt.Fprint(tw, "-")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

// cellText renders a scalar as text and anything nested as compact JSON.
func cellText(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
