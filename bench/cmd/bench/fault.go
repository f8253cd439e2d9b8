package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/internal/testlab/faultlab"
)

// The fault workload (issue 15): two unbound backends behind a LossyFarm
// (nftables in a namespace dropping a share of the packets they receive),
// dnsperf at a modest fixed load, and what becomes of every query.
const (
	faultQPS         = 2000
	faultDur         = 10 * time.Second
	faultClients     = 4
	faultOutstanding = 20000
	// faultLostAfter is dnsperf's -t: long enough that anyfront's
	// retries (2 s timeouts) still count as answered, slowly.
	faultLostAfter = 5 * time.Second
)

// faultLosses are the phases: issue 15's targets at 5%, its "goal
// beyond" at 10%.
var faultLosses = []int{5, 10}

// faultSkipRoot is printed (and written in the report) when the fault
// workload cannot run.
const faultSkipRoot = "fault workload skipped: needs root (namespaces, nftables)"

// faultCan returns "" when the fault workload can run here, or why not.
func faultCan() string {
	if os.Geteuid() != 0 {
		return faultSkipRoot
	}
	if _, err := testlab.LookBinary("nft"); err != nil {
		return fmt.Sprintf("fault workload skipped: %v (scripts/install-deps.sh bench installs nftables)", err)
	}
	return ""
}

// faultResult is one system measured at one loss in one round.
type faultResult struct {
	round    int
	loss     int
	system   string
	sent     int
	answered int
	lost     int
	servfail int
	// p50, p99, p999 in µs; lost queries count as infinitely slow.
	p50, p99, p999 float64
	// perAnswer is queries sent towards the backends (what they counted
	// plus what the farm dropped on the way) per answered query.
	perAnswer float64
	dropped   uint64 // packets the farm dropped during the run
	err       error
}

// runFault runs every round of the fault workload and returns the cells.
func (l *lab) runFault(ctx context.Context, o options, systems []string, start time.Time) ([]faultResult, error) {
	prefix := fmt.Sprintf("afb%06x", os.Getpid()&0xffffff)
	farm, err := faultlab.NewLossyFarm(prefix, faultlab.LossyFarmOptions{Backends: 2, Unbound: testlab.UnboundOptions{Threads: 1}})
	if err != nil {
		return nil, fmt.Errorf("lossy farm: %w", err)
	}
	defer farm.Close()
	say("fault: farm %s, backends %v", farm.NS.Name, farm.Addrs)
	fl := *l // the same lab, with the farm's backends
	fl.backends = farm.Backends
	var out []faultResult
	for round := range o.rounds {
		for li, loss := range faultLosses {
			for _, sys := range rotate(systems, round+li) {
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				c := fl.faultCell(ctx, farm, round, loss, sys)
				if ctx.Err() != nil {
					return out, ctx.Err()
				}
				out = append(out, c)
				say("round %d/%d fault %d%% %-8s %s  [%v elapsed]", round+1, o.rounds, loss, sys, c.summary(), time.Since(start).Round(time.Second))
			}
		}
	}
	return out, nil
}

// faultCell starts the system with the farm lossless (so readiness probes
// and the first health checks pass), turns the loss on, runs the load,
// and turns it off again.
func (l *lab) faultCell(ctx context.Context, farm *faultlab.LossyFarm, round, loss int, system string) faultResult {
	c := faultResult{round: round, loss: loss, system: system}
	if c.err = farm.SetLoss(0); c.err != nil {
		return c
	}
	data := fmt.Sprintf("%s/data-fault-%d-%s.txt", l.dir, round, system)
	if c.err = writeDataFile(data, workloads[0], fmt.Sprintf("f%x", l.rng.Uint32()), l.rng); c.err != nil {
		return c
	}
	var s *sut
	if system == "direct" {
		// One of the two lossy backends, straight.
		s = &sut{name: system, addr: farm.Addrs[0].String(), pid: farm.Backends[0].PID, close: func() {}}
	} else {
		var err error
		if s, err = l.start(ctx, system, workloads[0]); err != nil {
			c.err = fmt.Errorf("start: %w", err)
			return c
		}
	}
	defer s.close()
	q0, err := farm.Queries()
	if err != nil {
		c.err = err
		return c
	}
	d0, err := farm.Dropped()
	if err != nil {
		c.err = err
		return c
	}
	if c.err = farm.SetLoss(loss); c.err != nil {
		return c
	}
	spec := loadSpec{server: s.addr, data: data, qps: faultQPS, dur: faultDur, clients: faultClients,
		threads: 1, outstanding: faultOutstanding, latency: true, mode: "udp", timeout: faultLostAfter}
	r, err := runDnsperf(ctx, spec)
	if e := farm.SetLoss(0); err == nil {
		err = e
	}
	if err != nil {
		c.err = err
		return c
	}
	q1, err := farm.Queries()
	if err != nil {
		c.err = err
		return c
	}
	d1, err := farm.Dropped()
	if err != nil {
		c.err = err
		return c
	}
	c.sent, c.answered = r.sum.Sent, r.sum.Completed
	c.lost = max(r.sum.Lost, r.lost, c.sent-c.answered)
	c.servfail = r.sum.Rcodes["SERVFAIL"]
	c.p50 = percentile(r.lat, c.lost, 50)
	c.p99 = percentile(r.lat, c.lost, 99)
	c.p999 = percentile(r.lat, c.lost, 99.9)
	c.dropped = d1 - d0
	if c.answered > 0 {
		c.perAnswer = (q1 - q0 + float64(c.dropped)) / float64(c.answered)
	} else {
		c.perAnswer = math.NaN()
	}
	return c
}

func (c faultResult) summary() string {
	if c.err != nil {
		return "FAILED: " + strings.SplitN(c.err.Error(), "\n", 2)[0]
	}
	return fmt.Sprintf("sent %d answered %d lost %d SERVFAIL %d p50 %s p99 %s p99.9 %s ms, %.3f backend q/answer",
		c.sent, c.answered, c.lost, c.servfail, ms(c.p50), ms(c.p99), ms(c.p999), c.perAnswer)
}

// ms formats µs as milliseconds; ∞ for a percentile reached by lost queries.
func ms(us float64) string {
	switch {
	case math.IsNaN(us):
		return "–"
	case math.IsInf(us, 1):
		return "∞ (lost)"
	case us < 10_000:
		return fmt.Sprintf("%.1f", us/1000)
	}
	return fmt.Sprintf("%.0f", us/1000)
}
