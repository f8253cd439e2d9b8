package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// saturated is the share of the offered load below which a fixed-load
// phase is marked: the system (or the machine) could not keep up, so its
// figures are those of its maximum rate, not of the load in the header.
const saturated = 0.95

// noCacheShare: a cache workload where at least this share of answered
// queries still reached the backends means the proxy is not caching.
const noCacheShare = 0.9

// report renders the results as Markdown.
type report struct {
	date             time.Time
	command          string
	opts             options
	env              env
	systems          []string
	wls              []workload
	results          []cellResult
	elapsed          time.Duration
	quick            bool
	dnsdistListeners int
}

// loadsOf returns the fixed loads workload wl was measured at.
func (r *report) loadsOf(wl string) []int {
	for _, w := range r.wls {
		if w.name == wl {
			return r.opts.loadsFor(w)
		}
	}
	return nil
}

// maxPhase is the index of the max-rate phase in the phases of workload wl.
func (r *report) maxPhase(wl string) int { return len(r.loadsOf(wl)) }

// med is the median over rounds of f on phase i of the cells of (wl, sys).
// Failed cells are left out; NaN when there is nothing to take it of.
func (r *report) med(wl, sys string, i int, f func(phaseResult) float64) float64 {
	var vs []float64
	for _, c := range r.results {
		if c.workload == wl && c.system == sys && c.err == nil && i < len(c.phases) {
			vs = append(vs, f(c.phases[i]))
		}
	}
	return median(vs)
}

// noCache reports whether anyfront forwarded nearly every query of a cache
// workload to the backends, i.e. it has no (working) cache yet.
func (r *report) noCache(wl workload) bool {
	return wl.cache && r.med(wl.name, "anyfront", 0, func(p phaseResult) float64 { return p.toBackends }) >= noCacheShare
}

// mark returns "†" when phase i of (wl, sys) fell short of its offered load.
func (r *report) mark(wl, sys string, i int) string {
	loads := r.loadsOf(wl)
	if i >= len(loads) {
		return ""
	}
	got := r.med(wl, sys, i, func(p phaseResult) float64 { return p.achieved })
	if got < saturated*float64(loads[i]) {
		return "†"
	}
	return ""
}

var (
	getCPU      = func(p phaseResult) float64 { return p.cpuPerQ }
	getAchieved = func(p phaseResult) float64 { return p.achieved }
	getP50      = func(p phaseResult) float64 { return p.p50 }
	getP99      = func(p phaseResult) float64 { return p.p99 }
	getRSS      = func(p phaseResult) float64 { return float64(p.rss) / (1 << 20) }
	getShare    = func(p phaseResult) float64 { return p.toBackends }
	getOther    = func(p phaseResult) float64 { return p.otherCores }
	getGen      = func(p phaseResult) float64 { return p.genCPUPerQ }
)

func (r *report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	b.WriteString(r.header())
	r.method(w)
	var conns []workload
	for _, wl := range r.wls {
		if wl.conn != "" {
			conns = append(conns, wl) // one table for them all, below
			continue
		}
		r.workloadTable(w, wl)
	}
	r.connTable(w, conns)
	r.comparisons(w)
	r.noise(w)
	r.raw(w)
	return b.String()
}

// header is the title, the command and the machine.
func (r *report) header() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	e := r.env
	w("# anyfront benchmark results")
	w("")
	w("Written by `bench/cmd/bench` (`make bench`) on %s, in %v. **Do not edit by hand**: rerun it.", r.date.Format("2006-01-02 15:04 MST"), r.elapsed.Round(time.Second))
	w("")
	if r.quick {
		w("> **Quick run** (`-quick`): one short round, to check the harness. Not figures to quote.")
		w("")
	}
	w("Command: `%s`", r.command)
	w("")
	w("| machine | |")
	w("| --- | --- |")
	w("| nproc | %d |", e.nproc)
	w("| CPU | %s |", e.cpuModel)
	w("| kernel | %s |", e.kernel)
	w("| anyfront | %s |", e.anyfront)
	w("| dnsdist | %s |", e.dnsdist)
	w("| unbound | %s |", e.unbound)
	w("| dnsperf | %s |", e.dnsperf)
	w("| go | %s |", e.goVer)
	w("")
	return b.String()
}

// comparisons prints the ratio tables (against dnsdist, and against
// anyfront-base in an A/B run) and issue 6's targets.
func (r *report) comparisons(w func(string, ...any)) {
	for _, pair := range [][2]string{{"anyfront", "dnsdist"}, {"anyfront", "anyfront-base"}} {
		if !containsAll(r.systems, pair[0], pair[1]) {
			continue
		}
		// One ratio table per set of loads: the encrypted workloads are
		// measured at lower loads than plain DNS.
		var done []string
		for _, wl := range r.wls {
			if slices.Contains(done, wl.name) || !containsAll(wl.systemsFor(pair[:]), pair[0], pair[1]) {
				continue
			}
			var group []workload
			for _, other := range r.wls {
				if slices.Equal(r.opts.loadsFor(other), r.opts.loadsFor(wl)) && containsAll(other.systemsFor(pair[:]), pair[0], pair[1]) {
					group = append(group, other)
					done = append(done, other.name)
				}
			}
			r.ratioTable(w, group, pair[0], pair[1])
		}
		if pair[1] == "dnsdist" && slices.ContainsFunc(r.wls, func(wl workload) bool { return !wl.encrypted() }) {
			r.targets(w)
		}
	}
	r.doqAgainstDoT(w)
}

// doqAgainstDoT prints anyfront's DoQ against its own DoT, measured at the
// same loads: dnsdist 1.7.3 has no DoQ to compare with.
func (r *report) doqAgainstDoT(w func(string, ...any)) {
	has := func(name string) bool {
		return slices.ContainsFunc(r.wls, func(wl workload) bool { return wl.name == name })
	}
	if !has("doq") || !has("dot") || !slices.Contains(r.systems, "anyfront") {
		return
	}
	loads := r.opts.dotLoads
	w("## anyfront: doq / dot (ratio of medians, same loads; CPU, p99: lower is better; max q/s: higher is better)")
	w("")
	head := ratioHead("system", loads)
	w("| %s |", strings.Join(head, " | "))
	w("|%s", strings.Repeat(" --- |", len(head)))
	rat := func(i int, f func(phaseResult) float64) string {
		return times(ratio(r.med("doq", "anyfront", i, f), r.med("dot", "anyfront", i, f)))
	}
	row := []string{"anyfront"}
	for i := range loads {
		row = append(row, rat(i, getCPU))
	}
	row = append(row, rat(len(loads), getAchieved))
	for i := range loads {
		row = append(row, rat(i, getP99))
	}
	w("| %s |", strings.Join(row, " | "))
	w("")
}

func (r *report) method(w func(string, ...any)) {
	o := r.opts
	w("## How it was measured")
	w("")
	w("- Two unbound %s backends (1 thread each) on loopback. **direct** is a third, identical unbound queried directly (the floor); **dnsdist** (%d UDP listener thread(s)) and **anyfront** (proxy workers at their default, one per CPU) forward to the two backends: round robin, an active health check of `health.anyfront.test. A` every %v (timeout %v, rise %d, fall %d), a packet cache of %d entries only in the cache workloads.", orUnknown(r.env.unbound), r.dnsdistListeners, healthInterval, healthTimeout, healthRise, healthFall, cacheEntries)
	w("- Each cell is a fresh process: started, probed until both backends receive queries through it, warmed up for %v at %d q/s, then measured at each fixed load (dnsperf `-Q`) for %v, then at the maximum rate (no `-Q`) for %v. %d round(s); the systems' order rotates every round and workload (A B C, B C A, ...); figures are **medians over rounds**.", o.warmup, o.loads[0], o.dur, o.dur, o.rounds)
	if slices.ContainsFunc(r.wls, workload.encrypted) {
		w("- **DoT and DoH**: both proxies get a second listener, `protocol: dot` / `protocol: doh` in anyfront and `addTLSLocal` / `addDOHLocal` in dnsdist, with the same self-signed ECDSA P-256 certificate (made by the harness for the run), up to 100 queries in flight per connection answered out of order (anyfront `max_inflight_per_conn`, dnsdist `maxInFlight`), %d queries per connection (anyfront's default `max_queries_per_conn`; dnsdist `setMaxTCPQueriesPerConnection`). Caches off, names as in the miss workload. Readiness is probed over plain DNS, then one query over the encrypted listener. Warm-up at the first load of the workload. No `direct` row: the backends speak plain DNS only.", tlsQueriesPerConn)
		w("- **DoT load**: dnsperf `-m dot -T %d -c %d -q %d`, at %s q/s and the maximum.", o.threads, o.clients, o.outstanding, joinLoads(o.dotLoads))
		if o.dohGen == "dnsperf" {
			w("- **DoH load**: dnsperf `-m doh` (HTTP/2, GET) `-T %d -c %d -q %d`: one query in flight per connection, because dnsperf 2.10 loses an answer whenever two arrive in one TLS read (DNS-OARC/dnsperf#240), far more often against dnsdist than against anyfront, which would make the comparison one of dnsperf's bug. With one query in flight dnsperf spends most of each query waiting, so DoH max q/s and latencies are dnsperf's limits, not the proxies': compare CPU µs/q at %s q/s.", o.dohConns, o.dohConns, o.dohConns, joinLoads(o.dohLoads))
		} else {
			method := "POST"
			if o.dohGET {
				method = "GET"
			}
			w("- **DoH load**: the harness's own generator (`-doh-gen go`; dnsperf 2.10 loses an answer whenever two arrive in one TLS read, DNS-OARC/dnsperf#240), on golang.org/x/net/http2's client: %d TLS connections (X25519), one `http2.ClientConn` each, up to %d streams in flight per connection, HTTP/2 %s `application/dns-message`, every answer's ID and question checked. Open loop at %s q/s: query i is due at i/rate and its latency counts from then, so a client falling behind shows in p99 instead of being omitted; max q/s is a closed loop over the %d streams. Its CPU per query (the harness's own, from getrusage) is under dnsperf µs/q in the per-cell table.", o.dohConns, o.dohStreams, method, joinLoads(o.dohLoads), o.dohConns*o.dohStreams)
		}
	}
	w("- **CPU µs/q**: utime+stime from `/proc/PID/stat` of the system under test only (the proxy, or the direct unbound; never the backends or dnsperf), over the dnsperf run, divided by the queries answered. It comes in 10 ms ticks (USER_HZ): about 0.3%% of what a proxy uses in a 5 s phase at 20k q/s.")
	w("- **p50/p99**: from dnsperf 2.10's per-query output (`-v`: one line per query with its latency, 1 µs resolution); dnsperf has no histogram option. A lost query (no answer within %v) counts as infinitely slow, so a run losing over 1%% shows p99 = ∞.", lostAfter)
	w("- **max q/s**: dnsperf without `-Q`, `-T %d -c %d -q %d`, answers per second. On this machine the two backends, the proxy and dnsperf share %d cores, so this is the throughput of the whole set-up, where a proxy's CPU per query decides how much is left for the rest.", o.maxThreads, o.clients, o.outstanding, r.env.nproc)
	w("- **RSS**: VmHWM (peak resident set) from `/proc/PID/status`, after the first load and after the max-rate run. **to backends**: queries the backends counted (unbound-control stats) per answered query, at the first load: ~100%% without a cache.")
	w("- Load: dnsperf `-T %d -c %d -q %d`; %d sockets so that SO_REUSEPORT spreads them over anyfront's workers. dnsperf itself needs a core: the load generator competes with what it measures (its own CPU per query is under Noise).", o.threads, o.clients, o.outstanding, o.clients)
	w("")
}

func (r *report) workloadTable(w func(string, ...any), wl workload) {
	loads := r.opts.loadsFor(wl)
	w("## %s", capitalize(wl.title))
	w("")
	head := []string{"system"}
	for _, q := range loads {
		head = append(head, fmt.Sprintf("CPU µs/q @%s", kqps(float64(q))))
	}
	head = append(head, "max q/s", fmt.Sprintf("p50 µs @%s", kqps(float64(loads[0]))))
	for _, q := range loads {
		head = append(head, fmt.Sprintf("p99 µs @%s", kqps(float64(q))))
	}
	head = append(head, fmt.Sprintf("RSS MiB @%s", kqps(float64(loads[0]))), "peak RSS MiB", "to backends")
	w("| %s |", strings.Join(head, " | "))
	w("|%s", strings.Repeat(" --- |", len(head)))
	anyMark := false
	for _, sys := range wl.systemsFor(r.systems) {
		name := sys
		if sys == "anyfront" && r.noCache(wl) {
			name = "anyfront (no cache yet: forwarded)"
		}
		row := []string{name}
		for i := range loads {
			m := r.mark(wl.name, sys, i)
			anyMark = anyMark || m != ""
			row = append(row, num(r.med(wl.name, sys, i, getCPU), 1)+m)
		}
		row = append(row, kqps(r.med(wl.name, sys, r.maxPhase(wl.name), getAchieved)))
		row = append(row, num(r.med(wl.name, sys, 0, getP50), 0)+r.mark(wl.name, sys, 0))
		for i := range loads {
			row = append(row, num(r.med(wl.name, sys, i, getP99), 0)+r.mark(wl.name, sys, i))
		}
		row = append(row, num(r.med(wl.name, sys, 0, getRSS), 1), num(r.med(wl.name, sys, r.maxPhase(wl.name), getRSS), 1))
		row = append(row, pct(r.med(wl.name, sys, 0, getShare)))
		w("| %s |", strings.Join(row, " | "))
	}
	w("")
	if anyMark {
		w("† answered less than %.0f%% of the offered load (median): saturated, so the figure is at its own maximum rate.", saturated*100)
		w("")
	}
}

// ratioHead is a ratio table's header: first, then CPU per query at each
// load, max q/s, p99 at each load.
func ratioHead(first string, loads []int) []string {
	head := []string{first}
	for _, q := range loads {
		head = append(head, "CPU/q @"+kqps(float64(q)))
	}
	head = append(head, "max q/s")
	for _, q := range loads {
		head = append(head, "p99 @"+kqps(float64(q)))
	}
	return head
}

// ratioTable prints the ratios for workloads measured at the same loads.
func (r *report) ratioTable(w func(string, ...any), wls []workload, a, b string) {
	loads := r.opts.loadsFor(wls[0])
	var names []string
	for _, wl := range wls {
		names = append(names, wl.name)
	}
	w("## %s / %s: %s (ratio of medians; CPU, p99, RSS: lower is better; max q/s: higher is better)", a, b, strings.Join(names, ", "))
	w("")
	head := append(ratioHead("workload", loads), "RSS @"+kqps(float64(loads[0])))
	w("| %s |", strings.Join(head, " | "))
	w("|%s", strings.Repeat(" --- |", len(head)))
	for _, wl := range wls {
		name := wl.name
		if r.noCache(wl) {
			name += " (anyfront forwarded: no cache yet)"
		}
		row := []string{name}
		rat := func(i int, f func(phaseResult) float64) string {
			return times(ratio(r.med(wl.name, a, i, f), r.med(wl.name, b, i, f)))
		}
		for i := range loads {
			row = append(row, rat(i, getCPU))
		}
		row = append(row, rat(r.maxPhase(wl.name), getAchieved))
		for i := range loads {
			row = append(row, rat(i, getP99))
		}
		row = append(row, rat(0, getRSS))
		w("| %s |", strings.Join(row, " | "))
	}
	w("")
}

// containsAll reports whether every name is in s.
func containsAll(s []string, names ...string) bool {
	for _, n := range names {
		found := false
		for _, x := range s {
			found = found || x == n
		}
		if !found {
			return false
		}
	}
	return true
}

// orUnknown shows a missing value as "?".
func orUnknown(s string) string {
	if s == "" {
		return "?"
	}
	return s
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// num formats v with prec decimals; NaN (not measured) is "–", +Inf "∞".
func num(v float64, prec int) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 1):
		return "∞"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// kqps formats a rate as "20k" or "81.3k".
func kqps(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	k := v / 1000
	if k == math.Trunc(k) {
		return fmt.Sprintf("%.0fk", k)
	}
	return fmt.Sprintf("%.1fk", k)
}

// pct formats a share as a percentage.
func pct(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", v*100)
}

// times formats a ratio as "0.93x".
func times(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.2fx", v)
}

// joinLoads formats loads as "5k, 10k".
func joinLoads(loads []int) string {
	var parts []string
	for _, q := range loads {
		parts = append(parts, kqps(float64(q)))
	}
	return strings.Join(parts, ", ")
}
