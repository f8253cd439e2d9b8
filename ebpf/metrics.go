package ebpf

import (
	"github.com/prometheus/client_golang/prometheus"
)

// verdictCount is the number of verdicts, VERDICT_MAX in xdp.h.
const verdictCount = 6

// verdictNames are the metric labels, in the order of enum verdict in xdp.h.
var verdictNames = [verdictCount]string{"pass", "blocked", "ratelimited", "malformed", "answered", "truncated"}

// Counters counts UDP packets to a VIP by the program's verdict, since
// the Dataplane was created. Traffic not for a VIP is not counted.
type Counters struct {
	Pass        uint64 // a query passed to the proxy (NOTIMP/FORMERR material among them)
	Blocked     uint64 // source in the blocklist or a dynamic block: dropped
	RateLimited uint64 // source prefix over its budget: dropped
	Malformed   uint64 // a response, a TC=1 query, or too short for its header/question: dropped
	Answered    uint64 // answered from the answer cache
	Truncated   uint64 // over budget, answered with TC=1 (ratelimit.tc_slip)
}

func countersFrom(c [verdictCount]uint64) Counters {
	return Counters{Pass: c[0], Blocked: c[1], RateLimited: c[2], Malformed: c[3], Answered: c[4], Truncated: c[5]}
}

// Counters returns the verdict counts, summed over CPUs.
func (d *Dataplane) Counters() (Counters, error) {
	c, err := d.counts()
	return countersFrom(c), err
}

func (d *Dataplane) counts() ([verdictCount]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.base
	if d.objs == nil {
		return c, nil
	}
	live, err := d.objs.counts()
	for i := range c {
		c[i] += live[i]
	}
	return c, err
}

var (
	packetsDesc = prometheus.NewDesc("anyfront_xdp_packets_total",
		"UDP packets to a VIP by the XDP program's verdict: pass (to the proxy), blocked (source blocklisted), "+
			"ratelimited (source prefix over budget, dropped), malformed (a response, a TC=1 query or one too short for its question, dropped), "+
			"answered (from the answer cache), truncated (over budget, answered with TC=1).",
		[]string{"verdict"}, nil)
	attachedDesc = prometheus.NewDesc("anyfront_xdp_attached",
		"1 while the XDP program is attached, labelled with the interface and mode (driver or generic).",
		[]string{"interface", "mode"}, nil)
	blocksDesc = prometheus.NewDesc("anyfront_xdp_dynamic_blocks",
		"Dynamic blocks added by the proxy and not yet expired.", nil, nil)
	answerEntriesDesc = prometheus.NewDesc("anyfront_xdp_answer_entries",
		"Answers in the XDP answer cache (0 while the program is not loaded).", nil, nil)
	answerPublishesDesc = prometheus.NewDesc("anyfront_xdp_answer_publishes_total",
		"Answers written to the XDP answer cache: new ones and changed ones (aged TTLs), not unchanged ones.", nil, nil)
)

// Collector returns the Prometheus collector for the XDP counters:
// anyfront_xdp_packets_total{verdict}, anyfront_xdp_attached,
// anyfront_xdp_dynamic_blocks, anyfront_xdp_answer_entries and
// anyfront_xdp_answer_publishes_total.
func (d *Dataplane) Collector() prometheus.Collector { return collector{d} }

type collector struct{ d *Dataplane }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- attachedDesc
	ch <- blocksDesc
	ch <- answerEntriesDesc
	ch <- answerPublishesDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	counts, err := c.d.counts()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(packetsDesc, err)
	} else {
		for i, n := range counts {
			ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(n), verdictNames[i])
		}
	}
	c.d.mu.Lock()
	iface, mode, blocks := c.d.iface, c.d.mode, len(c.d.blocks.dynamic)
	entries, publishes := 0, c.d.publishes
	if c.d.objs != nil {
		entries = len(c.d.objs.answerMirror.entries)
	}
	c.d.mu.Unlock()
	if iface != "" {
		ch <- prometheus.MustNewConstMetric(attachedDesc, prometheus.GaugeValue, 1, iface, mode)
	}
	ch <- prometheus.MustNewConstMetric(blocksDesc, prometheus.GaugeValue, float64(blocks))
	ch <- prometheus.MustNewConstMetric(answerEntriesDesc, prometheus.GaugeValue, float64(entries))
	ch <- prometheus.MustNewConstMetric(answerPublishesDesc, prometheus.CounterValue, float64(publishes))
}
