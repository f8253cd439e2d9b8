package proxy

import "github.com/prometheus/client_golang/prometheus"

var (
	descQLogFrames    = prometheus.NewDesc("anyfront_proxy_querylog_frames_total", "dnstap frames written to the query log's file or socket.", nil, nil)
	descQLogDropped   = prometheus.NewDesc("anyfront_proxy_querylog_dropped_total", "Query log messages dropped, by reason: queue_full, too_big, no_reader (no socket reader, or a failed write).", []string{"reason"}, nil)
	descQLogConnected = prometheus.NewDesc("anyfront_proxy_querylog_connected", "1 while the query log has somewhere to write (a file, or a socket with a reader).", nil, nil)
	descTopDropped    = prometheus.NewDesc("anyfront_proxy_top_dropped_total", "Sampled queries the top clients and names had no room for.", nil, nil)
)

// collectObservers exports the query log's and the top table's counters,
// only for those that are on.
func (p *Proxy) collectObservers(ch chan<- prometheus.Metric) {
	if q := p.qlog; q != nil {
		ch <- prometheus.MustNewConstMetric(descQLogFrames, prometheus.CounterValue, float64(q.frames.Load()))
		for _, d := range []struct {
			reason string
			n      uint64
		}{{"queue_full", q.dropFull.Load()}, {"too_big", q.dropBig.Load()}, {"no_reader", q.dropWrite.Load()}} {
			ch <- prometheus.MustNewConstMetric(descQLogDropped, prometheus.CounterValue, float64(d.n), d.reason)
		}
		up := 0.0
		if q.connected.Load() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descQLogConnected, prometheus.GaugeValue, up)
	}
	if t := p.top; t != nil {
		ch <- prometheus.MustNewConstMetric(descTopDropped, prometheus.CounterValue, float64(t.dropped.Load()))
	}
}
