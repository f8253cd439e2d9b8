package main

import (
	"fmt"
	"math"
	"strings"
)

// Issue 15's targets at 5% loss, and its goal beyond at 10%.
const (
	faultTargetP99   = 50_000  // µs
	faultTargetP999  = 250_000 // µs
	faultTargetPerQ  = 1.10
	faultGoalP999    = 100_000 // µs, at 10% loss
	faultTargetLoss  = 5
	faultGoalLossPct = 10
)

// faultMed is the median over rounds of f for (loss, sys), failed cells left out.
func faultMed(rs []faultResult, loss int, sys string, f func(faultResult) float64) float64 {
	var vs []float64
	for _, c := range rs {
		if c.loss == loss && c.system == sys && c.err == nil {
			vs = append(vs, f(c))
		}
	}
	return median(vs)
}

// faultMarkdown is the fault workload's section of the report; skip, when
// set, is why it did not run.
func faultMarkdown(rs []faultResult, systems []string, rounds int, skip string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("## Faults: backends losing packets (issue 15)")
	w("")
	if skip != "" {
		w("> %s", skip)
		w("")
		return b.String()
	}
	w("Two unbound backends (1 thread each) in a network namespace of their own, reached over a veth, with nftables there dropping a share of the packets they receive (`numgen random mod 100 < N drop`: this kernel has no netem). Each cell starts the system with the farm lossless (readiness probes, first health checks), then turns the loss on for the run: dnsperf `-Q %d -c %d -q %d -t %.0f -l %.0f -v`, fresh random names, no cache. **direct** is dnsperf straight at one lossy backend; **dnsdist** and **anyfront** are configured as in the miss workload, in front of both. A query with no answer in %v counts as lost and infinitely slow in the percentiles. **backend q / answered**: queries the backends counted (`unbound-control stats_noreset`) plus the packets the farm dropped on their way, per answered query (the price of retries and hedging; direct: about 1/(1−loss)). Medians over %d round(s).",
		faultQPS, faultClients, faultOutstanding, faultLostAfter.Seconds(), faultDur.Seconds(), faultLostAfter, rounds)
	w("")
	get := map[string]func(faultResult) float64{
		"sent":     func(c faultResult) float64 { return float64(c.sent) },
		"answered": func(c faultResult) float64 { return float64(c.answered) },
		"lost":     func(c faultResult) float64 { return float64(c.lost) },
		"servfail": func(c faultResult) float64 { return float64(c.servfail) },
		"p50":      func(c faultResult) float64 { return c.p50 },
		"p99":      func(c faultResult) float64 { return c.p99 },
		"p999":     func(c faultResult) float64 { return c.p999 },
		"perq":     func(c faultResult) float64 { return c.perAnswer },
	}
	med := func(loss int, sys, k string) float64 { return faultMed(rs, loss, sys, get[k]) }
	for _, loss := range faultLosses {
		w("### %d%% loss", loss)
		w("")
		w("| system | sent | answered | lost | SERVFAIL | p50 ms | p99 ms | p99.9 ms | backend q / answered |")
		w("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
		for _, sys := range systems {
			sent := med(loss, sys, "sent")
			lost, sf := med(loss, sys, "lost"), med(loss, sys, "servfail")
			w("| %s | %s | %s | %s (%s) | %s (%s) | %s | %s | %s | %s |", sys, num(sent, 0), num(med(loss, sys, "answered"), 0),
				num(lost, 0), share(lost, sent), num(sf, 0), share(sf, sent),
				ms(med(loss, sys, "p50")), ms(med(loss, sys, "p99")), ms(med(loss, sys, "p999")), num(med(loss, sys, "perq"), 3))
		}
		w("")
	}
	w("### Issue 15 targets (medians above)")
	w("")
	w("| target | %s |", strings.Join(systems, " | "))
	w("|%s", strings.Repeat(" --- |", len(systems)+1))
	type target struct {
		what string
		loss int
		key  string
		ok   func(float64) bool
		fmt  func(float64) string
	}
	count := func(v float64) string { return num(v, 0) }
	for _, t := range []target{
		{"0 lost at 5%", faultTargetLoss, "lost", func(v float64) bool { return v == 0 }, count},
		{"0 SERVFAIL at 5%", faultTargetLoss, "servfail", func(v float64) bool { return v == 0 }, count},
		{"p99 <= 50 ms at 5%", faultTargetLoss, "p99", func(v float64) bool { return v <= faultTargetP99 }, ms},
		{"p99.9 <= 250 ms at 5%", faultTargetLoss, "p999", func(v float64) bool { return v <= faultTargetP999 }, ms},
		{"backend q / answered <= 1.10 at 5%", faultTargetLoss, "perq", func(v float64) bool { return v <= faultTargetPerQ }, func(v float64) string { return num(v, 3) }},
		{"*goal*: p99.9 <= 100 ms at 10%", faultGoalLossPct, "p999", func(v float64) bool { return v <= faultGoalP999 }, ms},
	} {
		row := []string{t.what}
		for _, sys := range systems {
			v := med(t.loss, sys, t.key)
			if math.IsNaN(v) {
				row = append(row, "–")
				continue
			}
			row = append(row, t.fmt(v)+": "+yesNo(t.ok(v)))
		}
		w("| %s |", strings.Join(row, " | "))
	}
	w("")
	var failed []string
	for _, c := range rs {
		if c.err != nil {
			failed = append(failed, fmt.Sprintf("- round %d, %d%%, %s: %s", c.round+1, c.loss, c.system, strings.ReplaceAll(c.err.Error(), "\n", " ⏎ ")))
		}
	}
	if len(failed) > 0 {
		w("Failed cells (left out of the medians):")
		w("")
		w("%s", strings.Join(failed, "\n"))
		w("")
	}
	w("<details><summary>Every fault cell</summary>")
	w("")
	w("| round | loss | system | sent | answered | lost | SERVFAIL | p50 ms | p99 ms | p99.9 ms | farm dropped | backend q / answered |")
	w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, c := range rs {
		if c.err != nil {
			continue
		}
		w("| %d | %d%% | %s | %d | %d | %d | %d | %s | %s | %s | %d | %.3f |", c.round+1, c.loss, c.system, c.sent, c.answered,
			c.lost, c.servfail, ms(c.p50), ms(c.p99), ms(c.p999), c.dropped, c.perAnswer)
	}
	w("")
	w("</details>")
	return b.String()
}

// share formats part/whole as a percentage with two decimals.
func share(part, whole float64) string {
	if math.IsNaN(part) || math.IsNaN(whole) || whole == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f%%", 100*part/whole)
}
