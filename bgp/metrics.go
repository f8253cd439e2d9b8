package bgp

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descPrefixAnnounced = prometheus.NewDesc("anyfront_bgp_prefix_announced",
		"1 while the prefix is announced to at least one established BGP session, else 0.",
		[]string{"prefix"}, nil)
	descPrefixTransitions = prometheus.NewDesc("anyfront_bgp_prefix_transitions_total",
		"Times the controller announced (to=announced) or withdrew (to=withdrawn) the prefix.",
		[]string{"prefix", "to"}, nil)
	descPeerUp = prometheus.NewDesc("anyfront_bgp_peer_up",
		"1 while the BGP session with the peer is established, else 0.",
		[]string{"peer"}, nil)
	descPeerTransitions = prometheus.NewDesc("anyfront_bgp_peer_transitions_total",
		"Times the BGP session with the peer came up or went down.",
		[]string{"peer"}, nil)
)

// metrics holds the counters; gauges are read from the controller's views
// at scrape time, so a prefix or peer removed by a reload disappears from
// /metrics instead of freezing at its last value.
type metrics struct {
	mu       sync.Mutex
	prefixTo map[netip.Prefix]*[2]uint64 // [withdrawn, announced]
	peerFlip map[netip.Addr]uint64
}

func newMetrics() *metrics {
	return &metrics{prefixTo: map[netip.Prefix]*[2]uint64{}, peerFlip: map[netip.Addr]uint64{}}
}

func (m *metrics) prefixTransition(p netip.Prefix, announced bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.prefixTo[p]
	if n == nil {
		n = new([2]uint64)
		m.prefixTo[p] = n
	}
	if announced {
		n[1]++
	} else {
		n[0]++
	}
}

func (m *metrics) forgetPrefix(p netip.Prefix) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.prefixTo, p)
}

func (m *metrics) peerTransition(a netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.peerFlip[a]++
}

func (m *metrics) forgetPeer(a netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.peerFlip, a)
}

// Collector returns the controller's Prometheus collector, for the admin
// server to register once: anyfront_bgp_prefix_announced{prefix},
// anyfront_bgp_prefix_transitions_total{prefix,to},
// anyfront_bgp_peer_up{peer} and anyfront_bgp_peer_transitions_total{peer}.
func (c *Controller) Collector() prometheus.Collector { return collector{c} }

type collector struct{ c *Controller }

func (collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descPrefixAnnounced
	ch <- descPrefixTransitions
	ch <- descPeerUp
	ch <- descPeerTransitions
}

func (col collector) Collect(ch chan<- prometheus.Metric) {
	st := col.c.status()
	m := col.c.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range st.Prefixes {
		ch <- prometheus.MustNewConstMetric(descPrefixAnnounced, prometheus.GaugeValue, b2f(p.Announced), p.Prefix)
		var n [2]uint64
		if pfx, err := netip.ParsePrefix(p.Prefix); err == nil && m.prefixTo[pfx] != nil {
			n = *m.prefixTo[pfx]
		}
		ch <- prometheus.MustNewConstMetric(descPrefixTransitions, prometheus.CounterValue, float64(n[1]), p.Prefix, "announced")
		ch <- prometheus.MustNewConstMetric(descPrefixTransitions, prometheus.CounterValue, float64(n[0]), p.Prefix, "withdrawn")
	}
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(descPeerUp, prometheus.GaugeValue, b2f(p.State == "established"), p.Address)
		var n uint64
		if a, err := netip.ParseAddr(p.Address); err == nil {
			n = m.peerFlip[a]
		}
		ch <- prometheus.MustNewConstMetric(descPeerTransitions, prometheus.CounterValue, float64(n), p.Address)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
