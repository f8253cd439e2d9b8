package admin

import (
	"runtime"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// metrics is the admin package's collector. Backend series are read from
// the store (and Deps.Live) at scrape time, so they never disagree with
// the API and need no updating on change.
type metrics struct {
	store *state.Store
	live  LiveStats

	up          *prometheus.Desc
	usable      *prometheus.Desc
	adminState  *prometheus.Desc
	weight      *prometheus.Desc
	outstanding *prometheus.Desc
	latency     *prometheus.Desc
	queries     *prometheus.Desc
	nodeDrained *prometheus.Desc
	requests    *prometheus.CounterVec
	audited     *prometheus.CounterVec
	buildInfo   prometheus.Metric
}

// adminStates are every admin state, so each backend exports one series per
// state (1 for the current one): the usual Prometheus enum, which makes
// "how many backends are drained" a plain sum.
var adminStates = []state.Admin{state.AdminAuto, state.AdminDrain, state.AdminUp, state.AdminDown}

func newMetrics(store *state.Store, live LiveStats, node config.Node, version string) *metrics {
	bp := []string{"backend", "pool"}
	return &metrics{
		store: store,
		live:  live,
		up: prometheus.NewDesc("anyfront_backend_up",
			"1 when health checks consider the backend up, else 0.", bp, nil),
		usable: prometheus.NewDesc("anyfront_backend_usable",
			"1 when new queries may go to the backend (health and admin state together).", bp, nil),
		adminState: prometheus.NewDesc("anyfront_backend_admin_state",
			"The operator's admin state of the backend: 1 for the current state, 0 for the others.",
			[]string{"backend", "state"}, nil),
		weight: prometheus.NewDesc("anyfront_backend_weight",
			"The backend's current weight (config, or as set over the admin API).", bp, nil),
		outstanding: prometheus.NewDesc("anyfront_backend_outstanding_queries",
			"Queries sent to the backend and not yet answered or timed out.", bp, nil),
		latency: prometheus.NewDesc("anyfront_backend_latency_seconds",
			"The backend's smoothed answer latency.", bp, nil),
		queries: prometheus.NewDesc("anyfront_backend_queries_total",
			"Queries sent to the backend since the proxy set it up.", bp, nil),
		nodeDrained: prometheus.NewDesc("anyfront_node_drained",
			"1 while an operator has drained the node (BGP graceful drain), else 0.", nil, nil),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anyfront_admin_requests_total",
			Help: "Admin API requests by route pattern and HTTP status code.",
		}, []string{"route", "code"}),
		audited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anyfront_admin_audit_total",
			Help: "Mutating admin calls by action (route pattern) and result: ok, refused (token) or failed.",
		}, []string{"action", "result"}),
		// The usual info metric: joined on node, it labels any series with
		// the version, and gives Grafana its node and site variables.
		buildInfo: prometheus.MustNewConstMetric(prometheus.NewDesc("anyfront_build_info",
			"Always 1; the labels say which build runs on which node and site.",
			nil, prometheus.Labels{"version": version, "goversion": runtime.Version(), "node": node.Name, "site": node.Site}),
			prometheus.GaugeValue, 1),
	}
}

// request counts one API request. route is a mux pattern or "unmatched",
// so the label set stays bounded whatever clients send.
func (m *metrics) request(route string, code int) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.up, m.usable, m.adminState, m.weight, m.nodeDrained} {
		ch <- d
	}
	if m.live != nil {
		ch <- m.outstanding
		ch <- m.latency
		ch <- m.queries
	}
	m.requests.Describe(ch)
	m.audited.Describe(ch)
	ch <- m.buildInfo.Desc()
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.requests.Collect(ch)
	m.audited.Collect(ch)
	ch <- m.buildInfo
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(m.nodeDrained, b2f(m.store.Node(nil).Drained))
	backends, err := m.store.Backends(nil)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(m.up, err)
		return
	}
	for _, b := range backends {
		gauge(m.up, b2f(b.Health == state.HealthUp), b.Name, b.Pool)
		gauge(m.usable, b2f(b.Usable()), b.Name, b.Pool)
		gauge(m.weight, float64(b.Weight), b.Name, b.Pool)
		for _, a := range adminStates {
			gauge(m.adminState, b2f(b.Admin == a), b.Name, string(a))
		}
		if m.live == nil {
			continue
		}
		if l, ok := m.live.BackendLive(b.Name); ok {
			gauge(m.outstanding, float64(l.Outstanding), b.Name, b.Pool)
			gauge(m.latency, float64(l.LatencyUS)/1e6, b.Name, b.Pool)
			ch <- prometheus.MustNewConstMetric(m.queries, prometheus.CounterValue, float64(l.Queries), b.Name, b.Pool)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
