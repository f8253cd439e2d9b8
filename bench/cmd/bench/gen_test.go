package main

import (
	"context"
	"errors"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestDueByAndDueAt(t *testing.T) {
	for _, c := range []struct {
		elapsed time.Duration
		rate    int
		want    int
	}{
		{0, 1000, 1}, // query 0 is due at once
		{999 * time.Microsecond, 1000, 1},
		{time.Millisecond, 1000, 2},
		{time.Second, 1000, 1001},
		{1500 * time.Millisecond, 20000, 30001},
		{-time.Second, 1000, 0},
		{time.Second, 0, 0},
		{3 * time.Hour, 50000, 3*3600*50000 + 1}, // no overflow
	} {
		if got := dueBy(c.elapsed, c.rate); got != c.want {
			t.Errorf("dueBy(%v, %d) = %d, want %d", c.elapsed, c.rate, got, c.want)
		}
	}
	// Consistent with each other: query i is due by dueAt(i), not before.
	for _, rate := range []int{1, 7, 500, 2000, 33333} {
		for i := range 5000 {
			at := dueAt(i, rate)
			if n := dueBy(at, rate); n <= i {
				t.Fatalf("rate %d: dueBy(dueAt(%d)=%v) = %d, want > %d", rate, i, at, n, i)
			}
			if at > 0 {
				if n := dueBy(at-1, rate); n > i {
					t.Fatalf("rate %d: query %d due before dueAt (%d due at %v)", rate, i, n, at-1)
				}
			}
		}
	}
}

// TestPaceOpenLoop: at a fixed rate the engine sends rate*dur queries,
// counts the outcomes apart, and measures latency from the due time.
func TestPaceOpenLoop(t *testing.T) {
	var calls atomic.Int64
	r := pace(context.Background(), 1000, 300*time.Millisecond, time.Second, newSlots(4, 8),
		func(ctx context.Context, i int, due time.Time) (genOutcome, bool, error) {
			calls.Add(1)
			switch i % 10 {
			case 1:
				return genFailed, false, errors.New("refused")
			case 2:
				return genMismatch, false, errMismatch
			}
			time.Sleep(2 * time.Millisecond)
			return genAnswered, i%2 == 0, nil
		})
	sent := r.sum.Sent
	if sent < 270 || sent > 305 {
		t.Errorf("sent %d queries in 300 ms at 1000 q/s, want about 300", sent)
	}
	if int(calls.Load()) != sent {
		t.Errorf("do called %d times for %d sent", calls.Load(), sent)
	}
	if r.sum.Completed+r.lost != sent || r.failed == 0 || r.mismatched == 0 || r.lost != r.failed+r.mismatched {
		t.Errorf("answered %d + lost %d (failed %d, mismatched %d) != sent %d", r.sum.Completed, r.lost, r.failed, r.mismatched, sent)
	}
	if r.firstErr == nil {
		t.Error("no first error kept")
	}
	if r.resumed == 0 {
		t.Error("resumed handshakes not counted")
	}
	if p := percentile(r.lat, r.lost, 50); p < 2000 || p > 50000 {
		t.Errorf("p50 %v us, want at least the 2 ms each answer took", p)
	}
	// 20% not answered: p99 must be infinite, not computed over survivors.
	if p := percentile(r.lat, r.lost, 99); !math.IsInf(p, 1) {
		t.Errorf("p99 %v with 20%% lost, want +Inf", p)
	}
}

// TestPaceSlotsBound: no more queries are in flight than the slots hold,
// and one that waits for a slot is late from its due time on.
func TestPaceSlotsBound(t *testing.T) {
	var inflight, peak atomic.Int64
	r := pace(context.Background(), 0, 200*time.Millisecond, time.Second, newSlots(2, 3),
		func(ctx context.Context, i int, due time.Time) (genOutcome, bool, error) {
			n := inflight.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(5 * time.Millisecond)
			inflight.Add(-1)
			return genAnswered, false, nil
		})
	if peak.Load() > 6 {
		t.Errorf("%d in flight, slots hold 6", peak.Load())
	}
	if peak.Load() < 4 {
		t.Errorf("closed loop kept only %d in flight of 6 slots", peak.Load())
	}
	if r.sum.Completed < 100 {
		t.Errorf("closed loop answered %d in 200 ms with 6 slots of 5 ms each, want ~240", r.sum.Completed)
	}

	// Open loop at 1000 q/s over one slot of 1: each query takes 5 ms, so
	// the queue grows and the late ones show it in their latency.
	r = pace(context.Background(), 1000, 100*time.Millisecond, 10*time.Second, newSlots(1, 1),
		func(ctx context.Context, i int, due time.Time) (genOutcome, bool, error) {
			time.Sleep(5 * time.Millisecond)
			return genAnswered, false, nil
		})
	if p := percentile(r.lat, r.lost, 99); p < 50000 {
		t.Errorf("p99 %v us for a client 5x behind its rate: waiting for a slot was omitted", p)
	}
}

// TestPaceTimeout: a query that gets no answer is lost once its deadline
// (due time + timeout) passes, and pace returns.
func TestPaceTimeout(t *testing.T) {
	start := time.Now()
	r := pace(context.Background(), 100, 50*time.Millisecond, 100*time.Millisecond, newSlots(1, 100),
		func(ctx context.Context, i int, due time.Time) (genOutcome, bool, error) {
			<-ctx.Done()
			o, err := timedOut(ctx, ctx.Err())
			return o, false, err
		})
	if r.sum.Completed != 0 || r.lost != r.sum.Sent || r.sum.Sent == 0 {
		t.Errorf("answered %d, lost %d of %d: want all lost", r.sum.Completed, r.lost, r.sum.Sent)
	}
	if r.failed != 0 {
		t.Errorf("%d timeouts counted as failures", r.failed)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("pace took %v with a 100 ms timeout", d)
	}
}

func packed(t *testing.T, name string, qt uint16, id uint16, response bool) []byte {
	t.Helper()
	m := new(dns.Msg).SetQuestion(name, qt)
	m.Id = id
	if response {
		m.Response = true
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{192, 0, 2, 1}})
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestCheckAnswer(t *testing.T) {
	q := packed(t, "m1-abc.rand.demo.test.", dns.TypeA, 4711, false)
	good := packed(t, "m1-abc.rand.demo.test.", dns.TypeA, 4711, true)
	if err := checkAnswer(q, good); err != nil {
		t.Errorf("matching answer: %v", err)
	}
	if err := checkAnswer(q, packed(t, "M1-aBc.rand.DEMO.test.", dns.TypeA, 4711, true)); err != nil {
		t.Errorf("0x20 case differences: %v", err)
	}
	for name, a := range map[string][]byte{
		"other ID":    packed(t, "m1-abc.rand.demo.test.", dns.TypeA, 4712, true),
		"other name":  packed(t, "m2-abc.rand.demo.test.", dns.TypeA, 4711, true),
		"other type":  packed(t, "m1-abc.rand.demo.test.", dns.TypeAAAA, 4711, true),
		"not a reply": packed(t, "m1-abc.rand.demo.test.", dns.TypeA, 4711, false),
		"truncated":   good[:20],
		"empty":       nil,
	} {
		if err := checkAnswer(q, a); !errors.Is(err, errMismatch) {
			t.Errorf("%s: %v, want errMismatch", name, err)
		}
	}
	if err := checkAnswer([]byte{1, 2, 3}, good); err == nil || errors.Is(err, errMismatch) {
		t.Errorf("bad query: %v, want an error about the query", err)
	}
}

func TestLoadQueriesAndIDs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(path, []byte("a.example. A\n\nb.example AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	qs, err := loadQueries(path)
	if err != nil || len(qs) != 2 {
		t.Fatalf("loadQueries: %d, %v", len(qs), err)
	}
	seen := map[uint16]bool{}
	for i := range 3 {
		b := queryFor(qs, i)
		var m dns.Msg
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		want := []string{"a.example.", "b.example.", "a.example."}[i]
		if m.Question[0].Name != want || !m.RecursionDesired || m.Id != queryID(i) {
			t.Errorf("query %d: %s rd=%v id=%d, want %s with RD and ID %d", i, m.Question[0].Name, m.RecursionDesired, m.Id, want, queryID(i))
		}
		seen[m.Id] = true
	}
	if queryFor(qs, 0)[0] != queryFor(qs, 0)[0] || &queryFor(qs, 0)[0] == &qs[0][0] {
		t.Error("queryFor must copy the template")
	}
	for i := range 1 << 16 {
		seen[queryID(i)] = true
	}
	if len(seen) != 1<<16 {
		t.Errorf("queryID covers %d IDs over 65536 queries, want all", len(seen))
	}
	if err := os.WriteFile(path, []byte("a.example. BOGUS\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadQueries(path); err == nil {
		t.Error("unknown type accepted")
	}
}

// TestBaseSpecOwnGenerators: DoH goes to the Go generator with its own
// connections and streams unless -doh-gen dnsperf, and the new-connection
// workloads to theirs with -conn-clients open at once.
func TestBaseSpecOwnGenerators(t *testing.T) {
	o := options{clients: 8, threads: 1, outstanding: 100, maxThreads: 1, dohConns: 8,
		dohGen: "go", dohStreams: 16, dohGET: true, connClients: 64, connLoads: []int{300}, dohLoads: []int{2000}, dotLoads: []int{5000}}
	for _, wl := range workloads {
		s := o.baseSpec(wl, "127.0.0.1:1", "data")
		switch {
		case wl.conn != "":
			if !s.newConn || s.resume != (wl.conn == "resume") || s.outstanding != 64 || s.mode != wl.transport {
				t.Errorf("%s: newConn %v resume %v outstanding %d mode %s", wl.name, s.newConn, s.resume, s.outstanding, s.mode)
			}
			if got := o.loadsFor(wl); len(got) != 1 || got[0] != 300 {
				t.Errorf("%s: loads %v, want -conn-loads", wl.name, got)
			}
		case wl.transport == "doh":
			if s.gen != "go" || s.clients != 8 || s.outstanding != 16 || !s.dohGET || s.newConn {
				t.Errorf("doh: gen %q, %d conns x %d streams, GET %v", s.gen, s.clients, s.outstanding, s.dohGET)
			}
		case wl.transport == "doq":
			// DoT's 8 connections and 100 in flight, 13 streams each.
			if s.gen != "go" || s.clients != 8 || s.outstanding != 13 || s.newConn {
				t.Errorf("doq: gen %q, %d conns x %d streams", s.gen, s.clients, s.outstanding)
			}
			if got := o.loadsFor(wl); !slices.Equal(got, o.dotLoads) {
				t.Errorf("doq: loads %v, want DoT's %v", got, o.dotLoads)
			}
		default:
			if s.gen != "" || s.newConn {
				t.Errorf("%s: gen %q newConn %v, want dnsperf", wl.name, s.gen, s.newConn)
			}
		}
	}
}

// TestTimedOut: a socket deadline or an expired context is a lost query,
// anything else a failure.
func TestTimedOut(t *testing.T) {
	live := context.Background()
	if o, _ := timedOut(live, &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}); o != genLost {
		t.Errorf("socket timeout: %v, want lost", o)
	}
	if o, _ := timedOut(live, errors.New("connection reset by peer")); o != genFailed {
		t.Errorf("reset: %v, want failed", o)
	}
	done, cancel := context.WithCancel(live)
	cancel()
	if o, _ := timedOut(done, errors.New("EOF")); o != genLost {
		t.Errorf("after the deadline: %v, want lost", o)
	}
}
