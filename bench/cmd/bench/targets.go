package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// The resolution and stretch targets of issue 6, as ratios to dnsdist.
const (
	targetParity     = 1.0
	stretchCPU       = 0.7
	stretchMaxQPS    = 1.2
	targetRSSMiB     = 64
	targetRSSLoadQPS = 20000
)

// loadIdx returns the phase index of offered load q in workload wl, or -1.
func (r *report) loadIdx(wl string, q int) int { return slices.Index(r.loadsOf(wl), q) }

// targets prints issue 6's targets against this run's medians.
func (r *report) targets(w func(string, ...any)) {
	w("## Issue 6 targets (from the medians above)")
	w("")
	w("| target | measured | met |")
	w("| --- | --- | --- |")
	rat := func(wl string, i int, f func(phaseResult) float64) float64 {
		if i < 0 {
			return math.NaN()
		}
		return ratio(r.med(wl, "anyfront", i, f), r.med(wl, "dnsdist", i, f))
	}
	row := func(what string, v float64, ok func(float64) bool) {
		met := "–"
		if !math.IsNaN(v) {
			met = map[bool]string{true: "yes", false: "**no**"}[ok(v)]
		}
		w("| %s | %s | %s |", what, times(v), met)
	}
	le := func(limit float64) func(float64) bool { return func(v float64) bool { return v <= limit } }
	ge := func(limit float64) func(float64) bool { return func(v float64) bool { return v >= limit } }
	has := func(name string) bool {
		return slices.ContainsFunc(r.wls, func(wl workload) bool { return wl.name == name })
	}

	if has("miss") {
		for _, q := range []int{20000, 50000} {
			row(fmt.Sprintf("misses: CPU/query at %s <= %.1fx dnsdist", kqps(float64(q)), targetParity), rat("miss", r.loadIdx("miss", q), getCPU), le(targetParity))
		}
		row(fmt.Sprintf("misses: max q/s >= %.1fx dnsdist", targetParity), rat("miss", r.maxPhase("miss"), getAchieved), ge(targetParity))
	}
	if has("hit") {
		hit := workloads[1]
		if r.noCache(hit) {
			w("| hits: CPU/query at 20k <= %.1fx dnsdist | – | not yet: anyfront forwarded every query (no cache) |", targetParity)
		} else {
			row(fmt.Sprintf("hits: CPU/query at 20k <= %.1fx dnsdist", targetParity), rat("hit", r.loadIdx("hit", 20000), getCPU), le(targetParity))
		}
	}
	// p99: the worst ratio over every comparable workload and load.
	worst, where := math.NaN(), ""
	for _, wl := range r.wls {
		if r.noCache(wl) || wl.encrypted() {
			// Forwarding vs answering from cache is not the same job;
			// the encrypted transports are issue 9's, not these targets.
			continue
		}
		for i, q := range r.opts.loadsFor(wl) {
			if v := rat(wl.name, i, getP99); !math.IsNaN(v) && (math.IsNaN(worst) || v > worst) {
				worst, where = v, fmt.Sprintf(" (worst: %s at %s)", wl.name, kqps(float64(q)))
			}
		}
	}
	row("p99 latency no worse than dnsdist"+where, worst, le(targetParity))
	if has("miss") {
		rss := math.NaN()
		if i := r.loadIdx("miss", targetRSSLoadQPS); i >= 0 {
			rss = r.med("miss", "anyfront", i, getRSS)
		}
		met := "–"
		if !math.IsNaN(rss) {
			met = map[bool]string{true: "yes", false: "**no**"}[rss < targetRSSMiB]
		}
		w("| peak RSS < %d MiB at %s, empty cache (misses) | %s MiB | %s |", targetRSSMiB, kqps(targetRSSLoadQPS), num(rss, 1), met)
		w("| zero allocations per query (forward and cache-hit paths) | not measured here | `go test` (testing.AllocsPerRun) |")
		w("| *stretch*: misses CPU/query <= %.1fx at 20k and 50k | %s, %s | %s |", stretchCPU,
			times(rat("miss", r.loadIdx("miss", 20000), getCPU)), times(rat("miss", r.loadIdx("miss", 50000), getCPU)),
			yesNo(rat("miss", r.loadIdx("miss", 20000), getCPU) <= stretchCPU && rat("miss", r.loadIdx("miss", 50000), getCPU) <= stretchCPU))
		row(fmt.Sprintf("*stretch*: misses max q/s >= %.1fx", stretchMaxQPS), rat("miss", r.maxPhase("miss"), getAchieved), ge(stretchMaxQPS))
	}
	w("")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

// noise prints how busy the machine was with other work, and what the load
// generator itself cost, per system: the context for every figure above.
func (r *report) noise(w func(string, ...any)) {
	w("## Noise and the load generator")
	w("")
	w("This machine is shared: other processes ran during the measurements. \"other load\" is the machine's busy time (`/proc/stat`) minus that of the system under test, the backends and dnsperf, in cores, over every measured phase. dnsperf's own CPU per query shows how much of the %d cores the generator took. Idle cores near 0 during the max-rate run mean the machine was the limit there: max q/s then ranks how much CPU each set-up needs per query, not the proxy's own capacity.", r.env.nproc)
	w("")
	w("| system | dnsperf µs/q @%s (plain DNS) | other load, cores: median / max | idle cores during max q/s, median |", kqps(float64(r.opts.loads[0])))
	w("| --- | --- | --- | --- |")
	for _, sys := range r.systems {
		var gen, other, idle []float64
		cells := 0
		for _, c := range r.results {
			if c.system != sys || c.err != nil {
				continue
			}
			cells++
			// The generator's cost over TLS is of another order: kept
			// out of this column, it is in the per-cell table.
			plain := !slices.ContainsFunc(r.wls, func(wl workload) bool { return wl.name == c.workload && wl.encrypted() })
			for i, p := range c.phases {
				if i == 0 && plain {
					gen = append(gen, getGen(p))
				}
				if i == r.maxPhase(c.workload) {
					idle = append(idle, p.idleCores)
				}
				other = append(other, getOther(p))
			}
		}
		if cells == 0 {
			continue
		}
		w("| %s | %s | %s / %s | %s |", sys, num(median(gen), 1), num(median(other), 2), num(maxOf(other), 2), num(median(idle), 2))
	}
	w("")
}

func maxOf(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	return slices.Max(vs)
}

// raw lists every cell, so a surprising median can be traced to its rounds.
func (r *report) raw(w func(string, ...any)) {
	var failed []string
	for _, c := range r.results {
		if c.err != nil {
			failed = append(failed, fmt.Sprintf("- round %d, %s, %s: %s", c.round+1, c.workload, c.system, strings.ReplaceAll(c.err.Error(), "\n", " ⏎ ")))
		}
	}
	if len(failed) > 0 {
		w("## Failed cells (left out of the medians)")
		w("")
		for _, f := range failed {
			w("%s", f)
		}
		w("")
	}
	w("<details><summary>Every cell, every phase</summary>")
	w("")
	w("| round | workload | system | offered | answered q/s | CPU µs/q | p50 µs | p99 µs | lost | to backends | dnsperf µs/q | other cores | idle cores | RSS MiB |")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, c := range r.results {
		for _, p := range c.phases {
			offered := "max"
			if p.offered > 0 {
				offered = kqps(float64(p.offered))
			}
			w("| %d | %s | %s | %s | %s | %s | %s | %s | %s%% | %s | %s | %s | %s | %s |", c.round+1, c.workload, c.system, offered,
				num(p.achieved, 0), num(p.cpuPerQ, 1), num(p.p50, 0), num(p.p99, 0), num(p.lossPct, 2),
				pct(p.toBackends), num(p.genCPUPerQ, 1), num(p.otherCores, 2), num(p.idleCores, 2), num(float64(p.rss)/(1<<20), 1))
		}
	}
	w("")
	w("</details>")
}

// summary is one progress line for a cell.
func (c cellResult) summary() string {
	if c.err != nil {
		return "FAILED: " + strings.SplitN(c.err.Error(), "\n", 2)[0]
	}
	var parts []string
	for _, p := range c.phases {
		if p.offered > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s µs/q p99 %s µs", kqps(float64(p.offered)), num(p.cpuPerQ, 1), num(p.p99, 0)))
		} else {
			parts = append(parts, fmt.Sprintf("max %s q/s (%s µs/q, lost %s%%, idle %s cores)", kqps(p.achieved), num(p.cpuPerQ, 1), num(p.lossPct, 2), num(p.idleCores, 2)))
		}
	}
	return strings.Join(parts, "; ")
}
