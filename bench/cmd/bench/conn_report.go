package main

import (
	"fmt"
	"strings"
)

// The new-connection workloads' part of the report: per workload and
// system, what a new TLS connection costs and how long its first query
// takes, at each fixed rate of new connections and at the maximum.

var (
	getFailed  = func(p phaseResult) float64 { return p.failedPct }
	getResumed = func(p phaseResult) float64 { return p.resumedPct }
	getLost    = func(p phaseResult) float64 { return p.lossPct }
)

// connTable prints one table for every new-connection workload in wls.
func (r *report) connTable(w func(string, ...any), wls []workload) {
	if len(wls) == 0 {
		return
	}
	loads := r.opts.connLoads
	w("## New TLS connections: one query per connection (full handshakes, resumptions)")
	w("")
	w("Each query opens a TCP connection, makes a TLS 1.3 handshake (X25519), asks one miss over DoT or DoH (HTTP/2 POST) and closes: the harness's own client, up to %d connections open at once. **first query** is from the query's due time to its answer: connect + handshake + query, the wait of a client that has just reconnected. **CPU µs/conn** is the system's own CPU per connection answered. **lost** counts connections with no answer within %v (and failed handshakes: **failed**), each infinitely slow in p99. **resumed**: handshakes that resumed a session from a ticket an earlier connection received (the resume workloads share one client session cache). max: a closed loop of %d clients, each reconnecting as soon as its answer is in.", r.opts.connClients, lostAfter, r.opts.connClients)
	w("")
	head := []string{"workload", "system"}
	for _, q := range loads {
		at := "@" + kqps(float64(q))
		head = append(head, "conns/s "+at, "CPU µs/conn "+at, "first query p50 µs "+at, "p99 µs "+at, "lost "+at, "failed "+at, "resumed "+at)
	}
	head = append(head, "max conns/s", "CPU µs/conn @max", "lost @max", "resumed @max", "peak RSS MiB")
	w("| %s |", strings.Join(head, " | "))
	w("|%s", strings.Repeat(" --- |", len(head)))
	for _, wl := range wls {
		mp := r.maxPhase(wl.name)
		for _, sys := range wl.systemsFor(r.systems) {
			row := []string{wl.name, sys}
			med := func(i int, f func(phaseResult) float64) float64 { return r.med(wl.name, sys, i, f) }
			for i := range loads {
				m := r.mark(wl.name, sys, i)
				row = append(row, num(med(i, getAchieved), 0)+m, num(med(i, getCPU), 0), num(med(i, getP50), 0), num(med(i, getP99), 0),
					pctOf(med(i, getLost)), pctOf(med(i, getFailed)), pctOf(med(i, getResumed)))
			}
			row = append(row, num(med(mp, getAchieved), 0), num(med(mp, getCPU), 0), pctOf(med(mp, getLost)), pctOf(med(mp, getResumed)), num(med(mp, getRSS), 1))
			w("| %s |", strings.Join(row, " | "))
		}
	}
	w("")
}

// pctOf formats a figure already in percent.
func pctOf(v float64) string {
	if v != v { // NaN: not measured
		return "–"
	}
	return fmt.Sprintf("%.1f%%", v)
}
