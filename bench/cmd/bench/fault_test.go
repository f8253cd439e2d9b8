package main

import (
	"math"
	"strings"
	"testing"
)

func TestSplitFault(t *testing.T) {
	for _, c := range []struct {
		in    string
		fault bool
		rest  string
	}{
		{"fault", true, ""},
		{"miss,fault,hit", true, "miss,hit"},
		{"miss,hit", false, "miss,hit"},
	} {
		f, rest := splitFault(c.in)
		if f != c.fault || rest != c.rest {
			t.Errorf("splitFault(%q) = %v, %q; want %v, %q", c.in, f, rest, c.fault, c.rest)
		}
	}
}

// p99.9 over 10,000 queries: the 9,990th fastest; one lost query more than
// 0.1% makes it infinite.
func TestPercentile999(t *testing.T) {
	lat := make([]float64, 10000)
	for i := range lat {
		lat[i] = float64(i + 1)
	}
	if got := percentile(lat, 0, 99.9); got != 9990 {
		t.Errorf("p99.9 = %v, want 9990", got)
	}
	if got := percentile(lat[:9989], 11, 99.9); !math.IsInf(got, 1) {
		t.Errorf("p99.9 with 11 of 10,000 lost = %v, want +Inf", got)
	}
}

func TestFaultMarkdown(t *testing.T) {
	if s := faultMarkdown(nil, systemNames, 3, faultSkipRoot); !strings.Contains(s, "needs root") {
		t.Errorf("skipped section does not say why:\n%s", s)
	}
	rs := []faultResult{
		{loss: 5, system: "anyfront", sent: 20000, answered: 20000, servfail: 46, p50: 100, p99: 2_087_000, p999: 4_140_000, perAnswer: 1.05},
		{loss: 5, system: "dnsdist", sent: 20000, answered: 19000, lost: 1000, p50: 100, p99: math.Inf(1), p999: math.Inf(1), perAnswer: 1.05},
	}
	s := faultMarkdown(rs, []string{"dnsdist", "anyfront"}, 1, "")
	for _, want := range []string{"| anyfront | 20000 | 20000 | 0 (0.00%) | 46 (0.23%) | 0.1 | 2087 | 4140 | 1.050 |",
		"| 0 SERVFAIL at 5% | 0: yes | 46: **no** |", "| 0 lost at 5% | 1000: **no** | 0: yes |"} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}
