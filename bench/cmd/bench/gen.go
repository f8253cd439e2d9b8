package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/miekg/dns"
)

// The harness's own load generators (DoH over HTTP/2 with pipelining, and
// one new TLS connection per query) share this engine: an open-loop pacer
// at a fixed offered rate, or a closed loop over a fixed number of slots
// for the max rate, with the same loadResult the dnsperf runner fills.

// errMismatch marks an answer whose ID or question is not the query's.
var errMismatch = errors.New("answer does not match the query")

// genOutcome is what became of one query.
type genOutcome int

const (
	genAnswered genOutcome = iota
	genLost                // no answer within the timeout
	genFailed              // connection, handshake or HTTP error
	genMismatch            // answered, but not to this query
)

// genTally collects the outcomes and latencies of one run; safe for
// concurrent use by the query goroutines.
type genTally struct {
	mu       sync.Mutex
	sent     int
	counts   [4]int
	lat      []float64 // us, answered queries only
	resumed  int       // new-connection runs: handshakes that resumed
	firstErr error     // the first failure, for the report's error text
}

func (t *genTally) add(o genOutcome, lat time.Duration, resumed bool, err error) {
	t.mu.Lock()
	t.counts[o]++
	if o == genAnswered {
		t.lat = append(t.lat, float64(lat.Microseconds()))
	}
	if resumed {
		t.resumed++
	}
	if err != nil && o != genAnswered && t.firstErr == nil {
		t.firstErr = err
	}
	t.mu.Unlock()
}

// result turns the tally into a loadResult over wall time elapsed: every
// query not answered (lost, failed or mismatched) counts as lost, i.e.
// infinitely slow in the percentiles, as dnsperf's lost queries do.
func (t *genTally) result(elapsed, cpu time.Duration) *loadResult {
	t.mu.Lock()
	defer t.mu.Unlock()
	notAnswered := t.counts[genLost] + t.counts[genFailed] + t.counts[genMismatch]
	sum := &testlab.DnsperfResult{Sent: t.sent, Completed: t.counts[genAnswered], Lost: notAnswered,
		Rcodes: map[string]int{}}
	if elapsed > 0 {
		sum.QPS = float64(sum.Completed) / elapsed.Seconds()
	}
	return &loadResult{sum: sum, lat: t.lat, lost: notAnswered, genCPU: cpu,
		failed: t.counts[genFailed], mismatched: t.counts[genMismatch], resumed: t.resumed}
}

// dueBy is how many queries an open loop at rate q/s has to have sent
// once elapsed has passed since it started: query i is due at i/rate.
func dueBy(elapsed time.Duration, rate int) int {
	if elapsed < 0 || rate <= 0 {
		return 0
	}
	// In integer nanoseconds: exact up to ~292 years of elapsed*rate/1e9.
	return int(int64(elapsed)/int64(time.Second)*int64(rate)+
		int64(elapsed)%int64(time.Second)*int64(rate)/int64(time.Second)) + 1
}

// dueAt is when query i of an open loop at rate q/s is due: i/rate
// rounded up to the nanosecond, so dueBy counts it due from then on.
func dueAt(i, rate int) time.Duration {
	return time.Duration((int64(i)*int64(time.Second) + int64(rate) - 1) / int64(rate))
}

// pace runs one load: queries 0, 1, ... handed to do, each in a goroutine
// of its own once a slot is free. slots[i%len(slots)] bounds the queries
// in flight (per connection, or overall); do must release nothing, the
// engine does. With rate > 0 query i is due at start+i/rate and its
// latency counts from then, so time spent waiting for a slot (the client
// falling behind) shows in the latency instead of being omitted; with
// rate 0 it is a closed loop, each query sent as soon as a slot frees.
// It stops sending after dur and returns once every query has finished
// (do must return by its context's deadline: due time + timeout).
func pace(ctx context.Context, rate int, dur, timeout time.Duration, slots []chan struct{},
	do func(ctx context.Context, i int, due time.Time) (genOutcome, bool, error)) *loadResult {
	t := &genTally{}
	var wg sync.WaitGroup
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	start := time.Now()
	end := start.Add(dur)
	send := func(i int, due time.Time) bool {
		slot := slots[i%len(slots)]
		select {
		case slot <- struct{}{}:
		case <-ctx.Done():
			return false
		}
		if rate == 0 {
			due = time.Now()
		}
		t.mu.Lock()
		t.sent++
		t.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slot }()
			qctx, cancel := context.WithDeadline(ctx, due.Add(timeout))
			defer cancel()
			o, resumed, err := do(qctx, i, due)
			t.add(o, time.Since(due), resumed, err)
		}()
		return true
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; ctx.Err() == nil; {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		if rate == 0 {
			if !send(i, now) {
				break
			}
			i++
			continue
		}
		for n := dueBy(now.Sub(start), rate); i < n; i++ {
			if !send(i, start.Add(dueAt(i, rate))) {
				break
			}
		}
		// Sleep to the next due time; the timer's slack (tens of us) is
		// made up by sending everything due on waking.
		if wait := time.Until(start.Add(dueAt(i, rate))); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
	}
	elapsed := time.Since(start)
	wg.Wait()
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := time.Duration(ru1.Utime.Nano()+ru1.Stime.Nano()-ru0.Utime.Nano()-ru0.Stime.Nano()) * time.Nanosecond
	r := t.result(elapsed, cpu)
	r.firstErr = t.firstErr
	return r
}

// newSlots returns n slot channels of size each.
func newSlots(n, size int) []chan struct{} {
	s := make([]chan struct{}, n)
	for i := range s {
		s[i] = make(chan struct{}, size)
	}
	return s
}

// loadQueries reads a dnsperf data file ("name TYPE" per line) and packs
// each line as a query with RD set and ID 0 (the sender sets the ID).
func loadQueries(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var qs [][]byte
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, typ, _ := strings.Cut(line, " ")
		qt, ok := dns.StringToType[strings.ToUpper(strings.TrimSpace(typ))]
		if !ok {
			return nil, fmt.Errorf("%s:%d: unknown type %q", path, n, typ)
		}
		m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qt)
		m.Id = 0
		b, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		qs = append(qs, b)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(qs) == 0 {
		return nil, fmt.Errorf("%s: no queries", path)
	}
	return qs, nil
}

// queryFor returns query i of the file (cycled, as dnsperf does) with an
// ID of its own, in a new buffer.
func queryFor(qs [][]byte, i int) []byte {
	q := append([]byte(nil), qs[i%len(qs)]...)
	id := queryID(i)
	q[0], q[1] = byte(id>>8), byte(id)
	return q
}

// queryID spreads consecutive query numbers over the ID space (an odd
// multiplier is a bijection mod 2^16), so an answer to a neighbour's query
// does not pass for this one's.
func queryID(i int) uint16 { return uint16(uint32(i)*40503 + 1) }

// checkAnswer reports whether a is an answer to q: a response, with q's
// ID and q's one question (the name compared case-insensitively, so 0x20
// randomisation passes). It compares the wire bytes, without unpacking:
// the generator shares the cores with what it measures. The question is
// the first name in both messages, so neither can hold a compression
// pointer there (there is nothing before it to point to).
func checkAnswer(q, a []byte) error {
	qEnd, err := questionEnd(q)
	if err != nil {
		return fmt.Errorf("query: %w", err)
	}
	switch {
	case len(a) < qEnd:
		return fmt.Errorf("%w: %d bytes, shorter than the question", errMismatch, len(a))
	case a[2]&0x80 == 0:
		return fmt.Errorf("%w: QR bit not set", errMismatch)
	case a[0] != q[0] || a[1] != q[1]:
		return fmt.Errorf("%w: ID %d, want %d", errMismatch, int(a[0])<<8|int(a[1]), int(q[0])<<8|int(q[1]))
	case a[4] != 0 || a[5] != 1:
		return fmt.Errorf("%w: %d questions", errMismatch, int(a[4])<<8|int(a[5]))
	}
	for i := 12; i < qEnd; i++ {
		if lower(a[i]) != lower(q[i]) {
			return fmt.Errorf("%w: question differs at byte %d", errMismatch, i)
		}
	}
	return nil
}

// questionEnd returns the offset just past the one question of message m.
func questionEnd(m []byte) (int, error) {
	if len(m) < 12 || m[4] != 0 || m[5] != 1 {
		return 0, errors.New("not a message with one question")
	}
	i := 12
	for i < len(m) && m[i] != 0 {
		if m[i]&0xc0 != 0 {
			return 0, errors.New("compressed or bad label in the question")
		}
		i += 1 + int(m[i])
	}
	i += 1 + 4 // the root label, QTYPE, QCLASS
	if i > len(m) {
		return 0, errors.New("question runs past the message")
	}
	return i, nil
}

func lower(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// sayFailures prints a run's failures and mismatches with the first
// error, so a report's loss figure can be traced to its cause.
func sayFailures(spec loadSpec, r *loadResult) {
	if r.failed+r.mismatched > 0 {
		say("%s %s at %d q/s: %d of %d failed, %d mismatched; first: %v",
			spec.mode, spec.server, spec.qps, r.failed, r.sum.Sent, r.mismatched, r.firstErr)
	}
}
