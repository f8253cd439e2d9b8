package dynblock

import "github.com/prometheus/client_golang/prometheus"

var (
	descDynBlocks   = prometheus.NewDesc("anyfront_proxy_dynblock_blocks", "Dynamic blocks in force.", nil, nil)
	descDynCreated  = prometheus.NewDesc("anyfront_proxy_dynblock_created_total", "Dynamic blocks put in place.", nil, nil)
	descDynBlocked  = prometheus.NewDesc("anyfront_proxy_dynblock_queries_total", "Queries stopped by a dynamic block, by action.", []string{"action"}, nil)
	descDynOverflow = prometheus.NewDesc("anyfront_proxy_dynblock_overflow_total", "Blocks not put in place because max_blocks were in force.", nil, nil)
	descDynXDPErrs  = prometheus.NewDesc("anyfront_proxy_dynblock_xdp_errors_total", "Dynamic blocks the XDP blocklist refused.", nil, nil)
)

// Collect exports the dynamic block counters.
func (d *Blocks) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(descDynBlocks, prometheus.GaugeValue, float64(max(d.n.Load(), 0)))
	ch <- prometheus.MustNewConstMetric(descDynCreated, prometheus.CounterValue, float64(d.created.Load()))
	ch <- prometheus.MustNewConstMetric(descDynBlocked, prometheus.CounterValue, float64(d.dropped.Load()), "drop")
	ch <- prometheus.MustNewConstMetric(descDynBlocked, prometheus.CounterValue, float64(d.refused.Load()), "refuse")
	ch <- prometheus.MustNewConstMetric(descDynOverflow, prometheus.CounterValue, float64(d.overflow.Load()))
	ch <- prometheus.MustNewConstMetric(descDynXDPErrs, prometheus.CounterValue, float64(d.xdpErrs.Load()))
}
