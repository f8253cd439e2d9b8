package healthcheck

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The Checker's metrics. Values are read from the backends' own counters at
// scrape time, so the probe path updates no Prometheus objects and a
// removed backend's series disappear with it.
var (
	probesDesc = prometheus.NewDesc("anyfront_healthcheck_probes_total",
		"Health probes that ended, by backend and result (success, timeout, rcode, bad_answer, error).",
		[]string{"backend", "result"}, nil)
	transitionsDesc = prometheus.NewDesc("anyfront_healthcheck_transitions_total",
		"Health changes (up to down or down to up) decided by the checker, by backend.",
		[]string{"backend"}, nil)
	failuresDesc = prometheus.NewDesc("anyfront_healthcheck_consecutive_failures",
		"Probes failed in a row, by backend.",
		[]string{"backend"}, nil)
	unexpectedDesc = prometheus.NewDesc("anyfront_healthcheck_unexpected_answers_total",
		"Datagrams on the probe sockets that matched no probe in flight (late, stray or forged).",
		nil, nil)
)

type collector struct{ c *Checker }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- probesDesc
	ch <- transitionsDesc
	ch <- failuresDesc
	ch <- unexpectedDesc
}

type backendFigures struct {
	name        string
	probes      [numResults]uint64
	transitions uint64
	fail        int
}

func (k collector) Collect(ch chan<- prometheus.Metric) {
	// Copy under the lock, send after it: a slow scrape must not hold up
	// probes.
	k.c.mu.Lock()
	figs := make([]backendFigures, 0, len(k.c.backends))
	for _, b := range k.c.backends {
		figs = append(figs, backendFigures{b.name, b.probes, b.transitions, b.fail})
	}
	unexpected := k.c.unexpected
	k.c.mu.Unlock()

	for _, f := range figs {
		for r, n := range f.probes {
			ch <- prometheus.MustNewConstMetric(probesDesc, prometheus.CounterValue, float64(n), f.name, resultNames[r])
		}
		ch <- prometheus.MustNewConstMetric(transitionsDesc, prometheus.CounterValue, float64(f.transitions), f.name)
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.GaugeValue, float64(f.fail), f.name)
	}
	ch <- prometheus.MustNewConstMetric(unexpectedDesc, prometheus.CounterValue, float64(unexpected))
}
