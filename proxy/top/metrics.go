package top

import "github.com/prometheus/client_golang/prometheus"

var descDropped = prometheus.NewDesc("anyfront_proxy_top_dropped_total", "Sampled queries the top clients and names had no room for.", nil, nil)

// Collect sends the table's counters to ch, for the proxy's collector to
// pass on. Nil-safe: tables that are off export nothing.
func (t *Table) Collect(ch chan<- prometheus.Metric) {
	if t == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(t.dropped.Load()))
}
