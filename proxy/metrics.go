package proxy

import (
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/pcache"
	"github.com/anyfront/anyfront/proxy/rules"
	"github.com/anyfront/anyfront/proxy/stream"

	"github.com/prometheus/client_golang/prometheus"
)

// Queries is how many queries the proxy took in over UDP and over the
// stream transports since it started.
func (p *Proxy) Queries() (udp, stream uint64) {
	return p.stats.UDPQueries.Load(), p.stats.TCPQueries.Load()
}

// counters count what the proxy did. They only grow; the collector
// exports them to Prometheus. They are the core's alone to write.
type counters struct {
	UDPQueries atomic.Uint64
	TCPQueries atomic.Uint64
	ACLRefused atomic.Uint64
	FormErr    atomic.Uint64
	NotImp     atomic.Uint64
	// Malformed counts dropped queries by reason.
	MalformedShort    atomic.Uint64
	MalformedNotQuery atomic.Uint64
	MalformedName     atomic.Uint64
	NoBackend         atomic.Uint64 // SERVFAIL because no backend is usable
	Shed              atomic.Uint64 // SERVFAIL because the in-flight table is full
	ServFail          atomic.Uint64 // SERVFAIL after every attempt failed
	Timeouts          atomic.Uint64 // attempts whose timeout (RTO) passed
	Retries           atomic.Uint64 // attempts after a query's first, hedges aside
	Hedges            atomic.Uint64 // hedged copies sent
	HedgesDenied      atomic.Uint64 // hedges the budget did not allow
	LateAnswers       atomic.Uint64 // valid answers to a query already answered: discarded
	DeadlinePassed    atomic.Uint64 // queries unanswered at their deadline (SERVFAIL or stale)
	Truncated         atomic.Uint64 // answers cut to the client's UDP size
	TCPRefetches      atomic.Uint64 // stream queries asked again over TCP: their UDP answer came truncated
	UnexpectedAnswers atomic.Uint64 // late, forged or unknown backend answers
	ReadErrors        atomic.Uint64
	SendErrors        atomic.Uint64
	TCPConnsRefused   atomic.Uint64 // over a connection bound
	TCPSlowReaders    atomic.Uint64 // TCP, DoT and DoH connections cut off: answers left unread past the backlog bound
	RuleRefused       atomic.Uint64
	RuleDropped       atomic.Uint64
	RuleSpoofed       atomic.Uint64
	// Rcodes counts forwarded answers by rcode (0-15).
	Rcodes [16]atomic.Uint64
	// RuleActions counts the answers rules made, by rules.Outcome.
	RuleActions [rules.NumOutcomes]atomic.Uint64
}

func (s *counters) countMalformed(err error) {
	switch err {
	case dnswire.ErrShort:
		s.MalformedShort.Add(1)
	case dnswire.ErrNotQuery:
		s.MalformedNotQuery.Add(1)
	default:
		s.MalformedName.Add(1)
	}
}

func (s *counters) countRcode(rc int) { s.Rcodes[rc&0xF].Add(1) }

// Malformed is the total of malformed queries dropped.
func (s *counters) Malformed() uint64 {
	return s.MalformedShort.Load() + s.MalformedNotQuery.Load() + s.MalformedName.Load()
}

// BackendStats is one backend's live figures for the API and metrics.
type BackendStats struct {
	Name        string
	Pool        string
	Address     netip.AddrPort
	Outstanding int64
	LatencyUS   int64
	Queries     uint64
	Answers     uint64
	Timeouts    uint64
	Refusals    uint64
	BadAnswers  uint64
	// RTO is the attempt timeout the backend's queries get now, and SRTT
	// its smoothed round-trip time (0: not measured yet).
	RTO, SRTT time.Duration
}

// Backend returns one backend's live figures.
func (p *Proxy) Backend(name string) (BackendStats, bool) {
	p.buildMu.Lock()
	u := p.ups[name]
	p.buildMu.Unlock()
	if u == nil {
		return BackendStats{}, false
	}
	return u.figures(p.snap.Load()), true
}

func (u *upstream) figures(snap *snapshot) BackendStats {
	var rto time.Duration
	if snap != nil {
		rto = time.Duration(u.rtt.RTO(snap.rtoFloor, snap.rtoCeil))
	}
	return BackendStats{
		RTO: rto, SRTT: time.Duration(u.rtt.SRTT()),
		Name: u.name, Pool: u.pool, Address: u.addr,
		Outstanding: u.stats.Outstanding.Load(), LatencyUS: u.stats.LatencyUS.Load(),
		Queries: u.queries.Load(), Answers: u.answers.Load(), Timeouts: u.timeouts.Load(),
		Refusals: u.refusals.Load(), BadAnswers: u.badAnswer.Load(),
	}
}

// Backends returns every backend's live figures.
func (p *Proxy) Backends() []BackendStats {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	out := make([]BackendStats, 0, len(p.ups))
	snap := p.snap.Load()
	for _, u := range p.ups {
		out = append(out, u.figures(snap))
	}
	return out
}

// latencyBuckets span loopback answers (tens of µs) to a cold resolver's
// recursion (seconds).
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}

func newLatencyHistogram(backend, pool string) prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "anyfront_proxy_backend_latency_seconds",
		Help:        "Time from sending a query to a backend to its valid answer.",
		Buckets:     latencyBuckets,
		ConstLabels: prometheus.Labels{"backend": backend, "pool": pool},
	})
}

// Collector exports the proxy's counters. It reads the hot path's atomics at
// scrape time, so counting costs the hot path nothing beyond the atomic add.
func (p *Proxy) Collector() prometheus.Collector { return collector{p} }

type collector struct{ p *Proxy }

// Describe sends nothing: the per-backend series come and go with the
// config, so this is an unchecked collector.
func (collector) Describe(chan<- *prometheus.Desc) {}

var (
	descQueries    = prometheus.NewDesc("anyfront_proxy_queries_total", "Queries received, by transport.", []string{"transport"}, nil)
	descResponses  = prometheus.NewDesc("anyfront_proxy_responses_total", "Backend answers relayed to clients, by rcode.", []string{"rcode"}, nil)
	descLocal      = prometheus.NewDesc("anyfront_proxy_local_answers_total", "Answers anyfront made itself, by reason.", []string{"reason"}, nil)
	descDropped    = prometheus.NewDesc("anyfront_proxy_dropped_total", "Malformed queries counted and dropped, by reason.", []string{"reason"}, nil)
	descEvents     = prometheus.NewDesc("anyfront_proxy_events_total", "Forwarding events: timeouts, retries, truncations, unexpected answers, socket errors.", []string{"event"}, nil)
	descBQueries   = prometheus.NewDesc("anyfront_proxy_backend_queries_total", "Queries sent to a backend, retries included.", []string{"backend", "pool"}, nil)
	descBOutcomes  = prometheus.NewDesc("anyfront_proxy_backend_outcomes_total", "What became of queries sent to a backend.", []string{"backend", "pool", "outcome"}, nil)
	descBOutstand  = prometheus.NewDesc("anyfront_proxy_backend_outstanding", "Queries sent to a backend and not yet answered or timed out.", []string{"backend", "pool"}, nil)
	descBRetrans   = prometheus.NewDesc("anyfront_proxy_backend_retransmits_total", "Attempts at a backend whose timeout (RTO) passed, so the query went again; a late answer to one still counts as an answer.", []string{"backend", "pool"}, nil)
	descBHedges    = prometheus.NewDesc("anyfront_proxy_backend_hedges_total", "Hedged copies of slow first attempts sent to a backend.", []string{"backend", "pool"}, nil)
	descBRTO       = prometheus.NewDesc("anyfront_proxy_backend_rto_seconds", "The attempt timeout a backend's queries get now: smoothed RTT plus four mean deviations, clamped to proxy.min_timeout..proxy.timeout.", []string{"backend", "pool"}, nil)
	descBSRTT      = prometheus.NewDesc("anyfront_proxy_backend_srtt_seconds", "A backend's smoothed round-trip time (RFC 6298); 0 until measured.", []string{"backend", "pool"}, nil)
	descTCPConns   = prometheus.NewDesc("anyfront_proxy_tcp_connections", "Client dnswire.TCP connections open.", nil, nil)
	descUDPInfligh = prometheus.NewDesc("anyfront_proxy_udp_inflight", "UDP queries awaiting a backend answer.", nil, nil)
)

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := &c.p.stats
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descQueries, s.UDPQueries.Load(), "udp")
	counter(descQueries, s.TCPQueries.Load(), "tcp")
	for rc := range s.Rcodes {
		if v := s.Rcodes[rc].Load(); v > 0 {
			counter(descResponses, v, rcodeName(rc))
		}
	}
	counter(descLocal, s.ACLRefused.Load(), "acl_refused")
	counter(descLocal, s.FormErr.Load(), "formerr")
	counter(descLocal, s.NotImp.Load(), "notimp")
	counter(descLocal, s.NoBackend.Load(), "servfail_no_backend")
	counter(descLocal, s.Shed.Load(), "servfail_shed")
	counter(descLocal, s.ServFail.Load(), "servfail_exhausted")
	counter(descLocal, s.RuleRefused.Load(), "rule_refused")
	counter(descLocal, s.RuleSpoofed.Load(), "rule_spoofed")
	counter(descDropped, s.RuleDropped.Load(), "rule_drop")
	counter(descDropped, s.MalformedShort.Load(), "short")
	counter(descDropped, s.MalformedNotQuery.Load(), "not_a_query")
	counter(descDropped, s.MalformedName.Load(), "bad_question")
	counter(descEvents, s.Timeouts.Load(), "timeout")
	counter(descEvents, s.Retries.Load(), "retry")
	counter(descEvents, s.Hedges.Load(), "hedge")
	counter(descEvents, s.HedgesDenied.Load(), "hedge_denied")
	counter(descEvents, s.LateAnswers.Load(), "late_answer")
	counter(descEvents, s.DeadlinePassed.Load(), "deadline_passed")
	counter(descEvents, s.Truncated.Load(), "truncated")
	counter(descEvents, s.TCPRefetches.Load(), "tcp_refetch")
	counter(descEvents, s.UnexpectedAnswers.Load(), "unexpected_answer")
	counter(descEvents, s.ReadErrors.Load(), "read_error")
	counter(descEvents, s.SendErrors.Load(), "send_error")
	counter(descEvents, s.TCPConnsRefused.Load(), "tcp_connection_refused")
	counter(descEvents, s.TCPSlowReaders.Load(), "tcp_slow_reader")
	for i, name := range rules.OutcomeNames {
		counter(descRuleActions, s.RuleActions[i].Load(), name)
	}
	c.p.collectObservers(ch)

	run := c.p.started.Load()
	if run == nil {
		run = &running{} // Run has not published its parts yet
	}
	if run.conns != nil {
		ch <- prometheus.MustNewConstMetric(descTCPConns, prometheus.GaugeValue, float64(run.conns.Conns()))
	}
	inflight := 0
	for _, sh := range run.shards {
		inflight += sh.inflight()
	}
	ch <- prometheus.MustNewConstMetric(descUDPInfligh, prometheus.GaugeValue, float64(inflight))

	c.p.buildMu.Lock()
	ups := make([]*upstream, 0, len(c.p.ups))
	for _, u := range c.p.ups {
		ups = append(ups, u)
	}
	c.p.buildMu.Unlock()
	c.collectCaches(ch)
	c.p.collectRulesAndBlocks(ch)
	for proto, t := range c.p.TransportStats() {
		counter(descTransport, t.Conns, proto, "connection")
		counter(descTransport, t.HandshakeFailures, proto, "handshake_failure")
		counter(descTransport, t.Queries, proto, "query")
		counter(descTransport, t.BadRequests, proto, "bad_request")
		counter(descTransport, t.ProxyBadHeader, proto, "proxy_bad_header")
		counter(descTransport, t.ProxyRefused, proto, "proxy_refused")
		counter(descTransport, t.ProxyUntrusted, proto, "proxy_untrusted")
		counter(descTransport, t.TicketKeysRejected, proto, "ticket_keys_rejected")
		counter(descTransport, t.HTTP2Floods, proto, "http2_flood")
		if proto != "do53" {
			counter(descTLSHandshakes, t.TLSFull, proto, "full")
			counter(descTLSHandshakes, t.TLSResumed, proto, "resumed")
		}
	}
	snap := c.p.snap.Load()
	for _, u := range ups {
		counter(descBQueries, u.queries.Load(), u.name, u.pool)
		counter(descBOutcomes, u.answers.Load(), u.name, u.pool, "answer")
		counter(descBOutcomes, u.timeouts.Load(), u.name, u.pool, "timeout")
		counter(descBOutcomes, u.refusals.Load(), u.name, u.pool, "unreachable")
		counter(descBOutcomes, u.badAnswer.Load(), u.name, u.pool, "bad_answer")
		ch <- prometheus.MustNewConstMetric(descBOutstand, prometheus.GaugeValue, float64(u.stats.Outstanding.Load()), u.name, u.pool)
		counter(descBRetrans, u.retransmits.Load(), u.name, u.pool)
		counter(descBHedges, u.hedges.Load(), u.name, u.pool)
		f := u.figures(snap)
		ch <- prometheus.MustNewConstMetric(descBRTO, prometheus.GaugeValue, f.RTO.Seconds(), u.name, u.pool)
		ch <- prometheus.MustNewConstMetric(descBSRTT, prometheus.GaugeValue, f.SRTT.Seconds(), u.name, u.pool)
		u.latency.Collect(ch)
	}
}

var rcodeNames = [16]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET", "NXRRSET", "NOTAUTH", "NOTZONE", "DSOTYPENI"}

func rcodeName(rc int) string {
	if n := rcodeNames[rc&0xF]; n != "" {
		return n
	}
	return strconv.Itoa(rc)
}

var (
	descCacheEvents  = prometheus.NewDesc("anyfront_proxy_cache_events_total", "Packet cache lookups and changes, by pool and event (hit, miss, stale, store, eviction, prefetch).", []string{"pool", "event"}, nil)
	descCacheEntries = prometheus.NewDesc("anyfront_proxy_cache_entries", "Answers held in the packet cache.", []string{"pool"}, nil)
	descTransport    = prometheus.NewDesc("anyfront_proxy_transport_events_total", "DoT, dnswire.DoH, dnswire.DoQ and PROXY protocol events, by protocol and event.", []string{"protocol", "event"}, nil)
	descRuleActions  = prometheus.NewDesc("anyfront_proxy_rule_actions_total", "Answers rules made, by action (refuse, drop, spoof, nxdomain, rcode, truncate).", []string{"action"}, nil)
)

// descTLSHandshakes counts handshakes beside transport_events' failed ones:
// a resumption ratio is resumed / (full + resumed) by protocol.
var descTLSHandshakes = prometheus.NewDesc("anyfront_proxy_tls_handshakes_total", "TLS handshakes on DoT, DoH and DoQ listeners, by protocol and kind: full, or resumed from a session ticket.", []string{"protocol", "kind"}, nil)

func (c collector) collectCaches(ch chan<- prometheus.Metric) {
	c.p.buildMu.Lock()
	caches := make(map[string]*pcache.Cache, len(c.p.caches))
	for name, pc := range c.p.caches {
		caches[name] = pc
	}
	c.p.buildMu.Unlock()
	for name, pc := range caches {
		st := pc.Stats()
		for _, e := range []struct {
			event string
			v     uint64
		}{
			{"hit", st.Hits}, {"miss", st.Misses}, {"stale", st.Stale},
			{"store", st.Stores}, {"eviction", st.Evictions}, {"prefetch", st.Prefetches},
		} {
			ch <- prometheus.MustNewConstMetric(descCacheEvents, prometheus.CounterValue, float64(e.v), name, e.event)
		}
		ch <- prometheus.MustNewConstMetric(descCacheEntries, prometheus.GaugeValue, float64(pc.Len()), name)
	}
}

// PurgeCache removes cached answers for names under suffix ("" or "." for
// all) from every pool's cache and returns how many it removed.
func (p *Proxy) PurgeCache(suffix string) (int, error) {
	w := rules.WireName(suffix)
	p.buildMu.Lock()
	caches := make([]*pcache.Cache, 0, len(p.caches))
	for _, pc := range p.caches {
		caches = append(caches, pc)
	}
	p.buildMu.Unlock()
	// Republish before returning: once the purge returns, XDP serves
	// none of what it removed.
	n := 0
	p.xdp.Apply(func() {
		for _, pc := range caches {
			n += pc.Purge(w)
		}
	})
	return n, nil
}

// running is what Run builds before serving and the collector reads:
// published whole through Proxy.started, so a scrape while Run is still
// starting sees nothing rather than a half-assigned slice.
type running struct {
	shards     []*shard
	conns      *stream.ConnLimit
	transports []transportSource
}
