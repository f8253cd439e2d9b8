package main

import (
	"math"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	// down returns n..1: unsorted on purpose.
	down := func(n int) []float64 {
		s := make([]float64, n)
		for i := range s {
			s[i] = float64(n - i)
		}
		return s
	}
	hundred := down(100)
	tests := []struct {
		name string
		lat  []float64
		lost int
		p    float64
		want float64
	}{
		{"median of 1..100 by nearest rank", hundred, 0, 50, 50},
		{"p99 of 1..100", hundred, 0, 99, 99},
		{"p100 is the maximum", hundred, 0, 100, 100},
		{"a single sample is every percentile", []float64{7}, 0, 99, 7},
		{"one lost in 100 leaves p99 finite", down(99), 1, 99, 99},
		{"two lost in 100 make p99 infinite", down(98), 2, 99, math.Inf(1)},
		{"losses do not move the median", down(90), 10, 50, 50},
		{"no queries at all", nil, 0, 50, math.NaN()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lat := append([]float64(nil), tt.lat...)
			got := percentile(lat, tt.lost, tt.p)
			if !same(got, tt.want) {
				t.Fatalf("percentile(p%v, lost %d) = %v, want %v", tt.p, tt.lost, got, tt.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd count", []float64{3, 1, 2}, 2},
		{"even count takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"failed rounds (NaN) are left out", []float64{nan, 5, nan, 7, 6}, 6},
		{"nothing measured", []float64{nan, nan}, nan},
		{"empty", nil, nan},
		{"an infinite p99 in one round of three does not win", []float64{inf, 10, 12}, 12},
		{"two infinite of three do", []float64{inf, 10, inf}, inf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.in); !same(got, tt.want) {
				t.Fatalf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	if got := ratio(18, 24); got != 0.75 {
		t.Errorf("ratio(18, 24) = %v", got)
	}
	for _, c := range [][2]float64{{1, 0}, {math.NaN(), 1}, {1, math.NaN()}, {math.Inf(1), math.Inf(1)}} {
		if got := ratio(c[0], c[1]); !math.IsNaN(got) {
			t.Errorf("ratio(%v, %v) = %v, want NaN (no meaningful ratio)", c[0], c[1], got)
		}
	}
}

// testReport is two rounds of dnsdist and anyfront on misses at 20k and
// 50k, plus a hit workload where anyfront still forwards everything.
func testReport() *report {
	ph := func(offered int, achieved, cpu, p99, share float64, rssMiB int64) phaseResult {
		return phaseResult{offered: offered, achieved: achieved, cpuPerQ: cpu, p50: p99 / 4, p99: p99,
			toBackends: share, rss: rssMiB << 20}
	}
	cell := func(round int, sys, wl string, cpu20, cpu50, max, share float64) cellResult {
		return cellResult{round: round, system: sys, workload: wl, phases: []phaseResult{
			ph(20000, 20000, cpu20, 200, share, 10), ph(50000, 49000, cpu50, 400, share, 12), ph(0, max, cpu50, math.NaN(), share, 14),
		}}
	}
	return &report{
		opts:    options{rounds: 2, loads: []int{20000, 50000}},
		env:     env{nproc: 2},
		systems: []string{"dnsdist", "anyfront"},
		wls:     []workload{workloads[0], workloads[1]},
		results: []cellResult{
			cell(0, "dnsdist", "miss", 26, 18, 80000, 1), cell(0, "anyfront", "miss", 20, 18, 90000, 1),
			cell(1, "dnsdist", "miss", 24, 18, 84000, 1), cell(1, "anyfront", "miss", 22, 18, 86000, 1),
			cell(0, "dnsdist", "hit", 14, 10, 120000, 0.001), cell(0, "anyfront", "hit", 21, 18, 88000, 1),
			{round: 1, system: "anyfront", workload: "hit", err: errTest},
		},
	}
}

var errTest = &testError{}

type testError struct{}

func (*testError) Error() string { return "dnsperf: no query answered\nsecond line" }

func TestReportTables(t *testing.T) {
	md := testReport().markdown()
	for _, want := range []string{
		// Medians: dnsdist 25.0 (26, 24), anyfront 21.0 (20, 22) at 20k.
		"| dnsdist | 25.0 | 18.0 | 82k | 50 | 200 | 400 | 10.0 | 14.0 | 100% |",
		"| anyfront | 21.0 | 18.0 | 88k |",
		// Ratios of medians, not medians of ratios.
		"| miss | 0.84x | 1.00x | 1.07x | 1.00x | 1.00x | 1.00x |",
		"| anyfront (no cache yet: forwarded) |",
		"| hit (anyfront forwarded: no cache yet) |",
		"| misses: CPU/query at 20k <= 1.0x dnsdist | 0.84x | yes |",
		"| misses: max q/s >= 1.0x dnsdist | 1.07x | yes |",
		"not yet: anyfront forwarded every query",
		"| *stretch*: misses max q/s >= 1.2x | 1.07x | **no** |",
		"- round 2, hit, anyfront: dnsperf: no query answered ⏎ second line",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}
}

func TestReportMarksSaturatedLoads(t *testing.T) {
	r := testReport()
	// anyfront answers only 30k of the 50k offered in both rounds.
	for i := range r.results {
		if c := &r.results[i]; c.system == "anyfront" && c.workload == "miss" {
			c.phases[1].achieved = 30000
		}
	}
	md := r.markdown()
	if !strings.Contains(md, "| anyfront | 21.0 | 18.0† |") || !strings.Contains(md, "† answered less than 95%") {
		t.Fatalf("saturated 50k not marked:\n%s", md)
	}
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{num(math.NaN(), 1), "–"}, {num(math.Inf(1), 0), "∞"}, {num(12.345, 1), "12.3"},
		{kqps(20000), "20k"}, {kqps(81250), "81.2k"}, {pct(0.996), "100%"}, {times(0.845), "0.84x"},
		{strings.Join(rotate([]string{"a", "b", "c"}, 4), ""), "bca"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestKeepNotes(t *testing.T) {
	first := keepNotes("# table v1\n", "")
	if first != "# table v1\n\n"+notesMarker+"\n" {
		t.Fatalf("first write = %q", first)
	}
	withNotes := first + "\n## Where the time goes\nprofiles...\n"
	second := keepNotes("# table v2\n", withNotes)
	if want := "# table v2\n\n" + notesMarker + "\n\n## Where the time goes\nprofiles...\n"; second != want {
		t.Fatalf("rewrite = %q, want %q", second, want)
	}
}

// same compares floats, treating NaN as equal to NaN.
func same(a, b float64) bool { return a == b || (math.IsNaN(a) && math.IsNaN(b)) }
