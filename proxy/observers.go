package proxy

import (
	"context"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/proxy/querylog"
	"github.com/anyfront/anyfront/proxy/top"
)

// The observers watch traffic without taking part in it: the dnstap query
// log (proxy/querylog) and the top clients and names (proxy/top). Each is
// nil when off, and every hook on the query path is nil-safe.

// startObservers starts the query log writer and the top aggregator. The
// returned stop ends both and waits for them: messages queued before it
// are still written. A query log file that cannot be created is an error;
// a socket without a reader is not (the writer keeps trying, and counts
// what it drops).
func (p *Proxy) startObservers() (stop func(), err error) {
	w, err := p.qlog.Open()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if w != nil {
		wg.Go(func() { w.Run(ctx) })
	}
	if t := p.top; t != nil {
		wg.Go(func() { t.Run(ctx) })
	}
	return func() { cancel(); wg.Wait() }, nil
}

// reloadObservers applies what a reload may change: the top sample rate.
// The query log's destination and queue are set up at start.
func (p *Proxy) reloadObservers(cfg *config.Config) {
	old := p.cfg.Load()
	if p.top != nil {
		p.top.SetSample(cfg.Top.Sample)
	} else if cfg.Top.Sample > 0 {
		p.log.Warn("top.sample: turning the top tables on needs a restart")
	}
	if !querylog.Same(old.QueryLog, cfg.QueryLog) {
		p.log.Warn("query_log changed: restart anyfront to apply it")
	}
}

// logQueryUDP logs a UDP query. The hooks inline into the UDP loops, so
// with the log off they cost one comparison; the client's kernel-form
// address is decoded only when the log is on.
func (p *Proxy) logQueryUDP(client *udpsock.Addr, server netip.AddrPort, msg []byte) {
	if p.qlog != nil {
		p.logUDP(false, client, server, msg)
	}
}

// logResponseUDP logs the answer sent to a UDP client, when answers are
// logged.
func (p *Proxy) logResponseUDP(client *udpsock.Addr, server netip.AddrPort, msg []byte) {
	if p.qlog.Responses() && len(msg) > 0 {
		p.logUDP(true, client, server, msg)
	}
}

// logUDP keeps the address decoding out of the hooks, so they inline.
func (p *Proxy) logUDP(resp bool, client *udpsock.Addr, server netip.AddrPort, msg []byte) {
	if resp {
		p.qlog.Response(dnswire.UDP, client.AddrPort(), server, msg)
	} else {
		p.qlog.Query(dnswire.UDP, client.AddrPort(), server, msg)
	}
}

// QueryLogStats reports the query log's counters; Enabled is false when
// the config has no query_log.
func (p *Proxy) QueryLogStats() querylog.Stats { return p.qlog.Stats() }

// Top lists the n busiest clients and names (at most top.Max) over the
// last minute, busiest first: GET /api/v1/top.
func (p *Proxy) Top(n int) top.List { return p.top.List(n) }

// collectObservers exports the query log's and the top table's counters,
// only for those that are on.
func (p *Proxy) collectObservers(ch chan<- prometheus.Metric) {
	p.qlog.Collect(ch)
	p.top.Collect(ch)
}
