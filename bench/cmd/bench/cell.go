package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"time"
)

// phaseResult is one dnsperf run against a running system: a fixed offered
// load, or as fast as dnsperf can (offered 0).
type phaseResult struct {
	offered  int     // q/s asked of dnsperf; 0: max rate
	achieved float64 // q/s answered (dnsperf's "Queries per second")
	cpuPerQ  float64 // us of the system's own CPU per answered query
	p50, p99 float64 // us; NaN when not measured (max-rate runs)
	lossPct  float64 // lost / sent, in percent
	// toBackends is the share of answered queries that reached a backend
	// (from the backends' own counters): ~1 without a cache, low with a
	// working one. NaN for direct, which has no backends.
	toBackends float64
	genCPUPerQ float64 // dnsperf's own us per query
	otherCores float64 // cores kept busy by processes not started here
	// idleCores is the machine's idle time over the phase, in cores: near
	// 0 at the max rate means the machine, not the system alone, was the
	// limit.
	idleCores float64
	rss       int64 // VmHWM after this phase, bytes
	// failedPct and resumedPct are the harness generators' connection or
	// HTTP failures and resumed handshakes, in percent of queries sent;
	// NaN under dnsperf.
	failedPct, resumedPct float64
}

// cellResult is one system measured on one workload in one round: a fresh
// process, a warm-up, then every phase in order.
type cellResult struct {
	round    int
	system   string
	workload string
	phases   []phaseResult // one per load, then the max-rate run
	err      error
}

// options are the knobs of a run (flags).
type options struct {
	rounds      int
	dur         time.Duration // each measured phase
	warmup      time.Duration
	loads       []int // fixed offered loads, q/s, of the plain DNS workloads
	dotLoads    []int // of the DoT workload
	dohLoads    []int // of the DoH workload
	clients     int
	threads     int
	maxThreads  int // dnsperf threads for the max-rate run
	outstanding int
	// dohConns is dnsperf's threads, connections and queries in flight for
	// DoH: one query in flight per connection, see baseSpec.
	dohConns int
	// dohGen is the DoH load generator: "go" (dohgen.go, dohConns
	// connections of dohStreams streams each, POST or dohGET) or dnsperf.
	dohGen     string
	dohStreams int
	dohGET     bool
	// connLoads are the new connections per second of the new-connection
	// workloads, connClients the connections open at once at most (and
	// the concurrent clients of their max-rate run).
	connLoads   []int
	connClients int
}

// loadsFor returns the fixed offered loads of workload wl: TLS costs
// several times what plain DNS does, so its loads are lower.
func (o options) loadsFor(wl workload) []int {
	if wl.conn != "" {
		return o.connLoads
	}
	switch wl.transport {
	case "dot", "doq":
		return o.dotLoads
	case "doh":
		return o.dohLoads
	}
	return o.loads
}

// baseSpec is the dnsperf run for workload wl against addr, before the
// offered load and duration are set.
func (o options) baseSpec(wl workload, addr, data string) loadSpec {
	s := loadSpec{server: addr, data: data, clients: o.clients, threads: o.threads,
		outstanding: o.outstanding, mode: wl.transport}
	if wl.conn != "" {
		s.newConn, s.resume, s.outstanding = true, wl.conn == "resume", o.connClients
		return s
	}
	if wl.transport == "doq" {
		// DoT's connections and queries in flight, spread over them.
		s.gen, s.outstanding = "go", max(1, (o.outstanding+o.clients-1)/o.clients)
		return s
	}
	if wl.transport == "doh" && o.dohGen == "go" {
		s.gen, s.clients, s.outstanding, s.dohGET = "go", o.dohConns, o.dohStreams, o.dohGET
		return s
	}
	if wl.transport == "doh" {
		// dnsperf 2.10's DoH client keeps one response buffer per
		// connection and takes one TLS read at a time: when two answers
		// arrive in one read it loses one of them, although the server
		// sent both (DNS-OARC/dnsperf#240). With one query in flight per
		// connection no two answers can meet, so every query is counted;
		// dnsperf shares -c and -q out over its -T threads, hence the
		// same number for all three.
		s.clients, s.threads, s.outstanding = o.dohConns, o.dohConns, o.dohConns
	}
	return s
}

// maxThreadsFor is dnsperf's -T for the max-rate run of wl.
func (o options) maxThreadsFor(wl workload) int {
	if wl.transport == "doh" {
		return o.dohConns
	}
	return o.maxThreads
}

// runCell starts the system, warms it up, measures every phase and stops it.
func (l *lab) runCell(ctx context.Context, o options, round int, system string, wl workload) cellResult {
	c := cellResult{round: round, system: system, workload: wl.name}
	data := filepath.Join(l.dir, "data-"+wl.name+".txt")
	// New names for every process: no cache starts warm from an earlier
	// cell, and the data file is the same for the three systems otherwise.
	salt := fmt.Sprintf("%x", l.rng.Uint32())
	if c.err = writeDataFile(data, wl, salt, l.rng); c.err != nil {
		return c
	}
	s, err := l.start(ctx, system, wl)
	if err != nil {
		c.err = fmt.Errorf("start: %w", err)
		return c
	}
	defer s.close()

	base := o.baseSpec(wl, s.addr, data)
	loads := o.loadsFor(wl)
	// The warm-up lets threads, socket buffers, TLS sessions and (for
	// cache workloads) the cache settle before anything is measured.
	warm := base
	warm.qps, warm.dur = loads[0], o.warmup
	if _, err := runLoad(ctx, warm); err != nil {
		c.err = fmt.Errorf("warm-up: %w", err)
		return c
	}
	for _, qps := range loads {
		spec := base
		spec.qps, spec.dur, spec.latency = qps, o.dur, true
		p, err := l.measure(ctx, s, spec)
		if err != nil {
			c.err = fmt.Errorf("%d q/s: %w", qps, err)
			return c
		}
		c.phases = append(c.phases, p)
	}
	spec := base
	spec.dur, spec.threads = o.dur, o.maxThreadsFor(wl)
	p, err := l.measure(ctx, s, spec)
	if err != nil {
		c.err = fmt.Errorf("max q/s: %w", err)
		return c
	}
	c.phases = append(c.phases, p)
	return c
}

// measure runs one phase and reads the counters around it. CPU is read
// from /proc/PID/stat of the system under test only: dnsperf and the
// backends are accounted separately.
func (l *lab) measure(ctx context.Context, s *sut, spec loadSpec) (phaseResult, error) {
	p := phaseResult{offered: spec.qps, p50: math.NaN(), p99: math.NaN(), toBackends: math.NaN(),
		failedPct: math.NaN(), resumedPct: math.NaN()}
	pid := s.pid()
	if pid == 0 {
		return p, fmt.Errorf("%s is not running", s.name)
	}
	var q0 []float64
	var err error
	if s.name != "direct" {
		if q0, err = backendQueries(l.backends); err != nil {
			return p, err
		}
	}
	m0, err := readMachineCPU()
	if err != nil {
		return p, err
	}
	c0, err := procCPU(pid)
	if err != nil {
		return p, err
	}
	b0 := l.backendCPU()

	r, err := runLoad(ctx, spec)
	if err != nil {
		return p, err
	}

	c1, err := procCPU(pid)
	if err != nil {
		return p, fmt.Errorf("%s died during the run: %w", s.name, err)
	}
	b1 := l.backendCPU()
	m1, err := readMachineCPU()
	if err != nil {
		return p, err
	}
	if p.rss, err = procHWM(pid); err != nil {
		return p, err
	}
	if q0 != nil {
		q1, err := backendQueries(l.backends)
		if err != nil {
			return p, err
		}
		var n float64
		for i := range q0 {
			n += q1[i] - q0[i]
		}
		p.toBackends = n / float64(r.sum.Completed)
	}

	done := float64(r.sum.Completed)
	p.achieved = r.sum.QPS
	p.cpuPerQ = float64((c1 - c0).Microseconds()) / done
	p.genCPUPerQ = float64(r.genCPU.Microseconds()) / done
	lost := max(r.sum.Lost, r.lost)
	if r.sum.Sent > 0 {
		p.lossPct = 100 * float64(lost) / float64(r.sum.Sent)
		if spec.gen != "" || spec.newConn {
			p.failedPct = 100 * float64(r.failed+r.mismatched) / float64(r.sum.Sent)
			p.resumedPct = 100 * float64(r.resumed) / float64(r.sum.Sent)
		}
	}
	if spec.latency {
		p.p50 = percentile(r.lat, lost, 50)
		p.p99 = percentile(r.lat, lost, 99)
	}
	// Everything busy on the machine that is not ours: the noise figure.
	if wall := m1.total - m0.total; wall > 0 {
		ours := (c1 - c0) + (b1 - b0) + r.genCPU
		cores := float64(runtime.NumCPU())
		p.otherCores = float64(m1.busy-m0.busy-ours) / float64(wall) * cores
		p.idleCores = float64(wall-(m1.busy-m0.busy)) / float64(wall) * cores
	}
	return p, nil
}

// backendCPU is the backends' CPU so far (for the noise figure only).
func (l *lab) backendCPU() time.Duration {
	var sum time.Duration
	for _, u := range l.backends {
		if pid := u.PID(); pid != 0 {
			if d, err := procCPU(pid); err == nil {
				sum += d
			}
		}
	}
	return sum
}
