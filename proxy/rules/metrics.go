package rules

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var descHits = prometheus.NewDesc("anyfront_proxy_rule_hits_total", "Queries matched by each rule, by its position and config line.", []string{"rule", "line"}, nil)

// Collect exports the rules' hit counters; a nil Set exports none.
func (s *Set) Collect(ch chan<- prometheus.Metric) {
	for i := range s.Len() {
		r := &s.rules[i]
		ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(r.hits.Load()), strconv.Itoa(i), strconv.Itoa(r.line))
	}
}
