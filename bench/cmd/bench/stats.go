package main

import (
	"math"
	"slices"
)

// percentile returns the p-th percentile (0 < p <= 100, nearest rank) of
// the latencies, in the latencies' unit. lost queries count as infinitely
// slow: a run that loses more than (100-p)% of its queries has an infinite
// p-th percentile instead of a flattering one computed over the survivors.
// lat is sorted in place. With no queries at all it returns NaN.
func percentile(lat []float64, lost int, p float64) float64 {
	n := len(lat) + lost
	if n == 0 || p <= 0 || p > 100 {
		return math.NaN()
	}
	// 1-based. p/100*n is inexact for p = 99.9 (9990.000000000002 for
	// n = 10,000), which Ceil would push a whole rank up: round the
	// product to 1e-6 first.
	rank := int(math.Ceil(math.Round(p*float64(n)*1e4) / 1e6))
	if rank < 1 {
		rank = 1
	}
	if rank > len(lat) {
		return math.Inf(1)
	}
	slices.Sort(lat)
	return lat[rank-1]
}

// median returns the median of the values that are not NaN (a NaN marks a
// measurement that failed or does not apply), or NaN when there are none.
// With an even count it is the mean of the middle two, as usual.
func median(vs []float64) float64 {
	xs := make([]float64, 0, len(vs))
	for _, v := range vs {
		if !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	if math.IsInf(xs[m-1], 1) || math.IsInf(xs[m], 1) {
		return xs[m] // avoid Inf-Inf style surprises; the upper middle is Inf
	}
	return (xs[m-1] + xs[m]) / 2
}

// ratio returns a/b, or NaN when either is missing, b is zero, or both are
// infinite (no meaningful ratio).
func ratio(a, b float64) float64 {
	if math.IsNaN(a) || math.IsNaN(b) || b == 0 || (math.IsInf(a, 0) && math.IsInf(b, 0)) {
		return math.NaN()
	}
	return a / b
}
