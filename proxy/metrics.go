package proxy

import (
	"net/netip"
	"sync/atomic"
)

// Stats counts what the proxy did. Counters only grow; the admin package
// exports them to Prometheus.
type Stats struct {
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
	Timeouts          atomic.Uint64
	Retries           atomic.Uint64
	Truncated         atomic.Uint64 // answers cut to the client's UDP size
	UnexpectedAnswers atomic.Uint64 // late, forged or unknown backend answers
	ReadErrors        atomic.Uint64
	SendErrors        atomic.Uint64
	TCPConnsRefused   atomic.Uint64 // over a connection bound
	// Rcodes counts forwarded answers by rcode (0-15).
	Rcodes [16]atomic.Uint64
}

func (s *Stats) countMalformed(err error) {
	switch err {
	case errShort:
		s.MalformedShort.Add(1)
	case errNotQuery:
		s.MalformedNotQuery.Add(1)
	default:
		s.MalformedName.Add(1)
	}
}

func (s *Stats) countRcode(rc int) { s.Rcodes[rc&0xF].Add(1) }

// Malformed is the total of malformed queries dropped.
func (s *Stats) Malformed() uint64 {
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
}

// Backends returns every backend's live figures.
func (p *Proxy) Backends() []BackendStats {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	out := make([]BackendStats, 0, len(p.ups))
	for _, u := range p.ups {
		out = append(out, BackendStats{
			Name: u.name, Pool: u.pool, Address: u.addr,
			Outstanding: u.stats.Outstanding.Load(), LatencyUS: u.stats.LatencyUS.Load(),
			Queries: u.queries.Load(), Answers: u.answers.Load(), Timeouts: u.timeouts.Load(),
			Refusals: u.refusals.Load(), BadAnswers: u.badAnswer.Load(),
		})
	}
	return out
}
