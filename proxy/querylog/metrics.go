package querylog

import "github.com/prometheus/client_golang/prometheus"

var (
	descFrames    = prometheus.NewDesc("anyfront_proxy_querylog_frames_total", "dnstap frames written to the query log's file or socket.", nil, nil)
	descDropped   = prometheus.NewDesc("anyfront_proxy_querylog_dropped_total", "Query log messages dropped, by reason: queue_full, too_big, no_reader (no socket reader, or a failed write).", []string{"reason"}, nil)
	descConnected = prometheus.NewDesc("anyfront_proxy_querylog_connected", "1 while the query log has somewhere to write (a file, or a socket with a reader).", nil, nil)
)

// Collect sends the log's counters to ch, for the proxy's collector to
// pass on. Nil-safe: a log that is off exports nothing.
func (q *Log) Collect(ch chan<- prometheus.Metric) {
	if q == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(descFrames, prometheus.CounterValue, float64(q.frames.Load()))
	for _, d := range []struct {
		reason string
		n      uint64
	}{{"queue_full", q.dropFull.Load()}, {"too_big", q.dropBig.Load()}, {"no_reader", q.dropWrite.Load()}} {
		ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(d.n), d.reason)
	}
	up := 0.0
	if q.connected.Load() {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, up)
}
