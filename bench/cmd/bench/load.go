package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

// workload is a query mix, and whether the proxies run with a packet cache
// for it.
type workload struct {
	name  string // short key: miss, hit, mix, dot, doh
	title string // what the report calls it
	cache bool   // dnsdist gets a packet cache, anyfront a cache: section
	// conn is "full" or "resume" for the new-connection workloads: one
	// TLS connection per query, full handshakes or resumptions.
	conn string
	// transport is what dnsperf speaks to the proxy (-m): udp, dot or doh.
	// The encrypted ones have no direct system: the lab's backends serve
	// plain DNS only.
	transport string
	// write writes one dnsperf data file. salt is new for every process
	// started, so no cache (ours or the backends') starts warm.
	write func(w io.Writer, salt string, rng *rand.Rand) error
}

// Workload sizes. The data file is cycled by dnsperf; for misses that does
// not matter (the proxies run without a cache), for the mix it only has to
// be long enough that the unique names rarely come round again in a cell.
const (
	missNames   = 100_000
	hitNames    = 100 // the "a hundred names"
	mixLines    = 200_000
	mixHotNames = 10_000 // the Zipf-distributed part draws from this many
	mixUnique   = 0.2    // share of mix queries for never-seen names
	// mixZipfS is the Zipf exponent of the hot part: s just above 1 is
	// what resolver query logs usually show (a few names dominate, with a
	// long tail).
	mixZipfS = 1.1
)

// workloads are measured in this order in every round.
var workloads = []workload{
	{name: "miss", title: "all cache misses (random names, caches off)", transport: "udp", write: writeMiss},
	{name: "hit", title: "all cache hits (100 names, caches on)", cache: true, transport: "udp", write: writeHit},
	{name: "mix", title: "realistic mix (80% Zipf over 10k names + 20% unique, caches on)", cache: true, transport: "udp", write: writeMix},
	{name: "dot", title: "DNS over TLS, all cache misses (random names, caches off)", transport: "dot", write: writeMiss},
	{name: "doh", title: "DNS over HTTPS, all cache misses (random names, caches off)", transport: "doh", write: writeMiss},
	{name: "doq", title: "DNS over QUIC, all cache misses (random names, caches off; anyfront only, at DoT's loads)", transport: "doq", write: writeMiss},
	{name: "dotconn", title: "DoT, a new connection per query, full handshakes", transport: "dot", conn: "full", write: writeMiss},
	{name: "dotresume", title: "DoT, a new connection per query, resumed sessions (TLS 1.3 tickets)", transport: "dot", conn: "resume", write: writeMiss},
	{name: "dohconn", title: "DoH, a new connection per query, full handshakes", transport: "doh", conn: "full", write: writeMiss},
	{name: "dohresume", title: "DoH, a new connection per query, resumed sessions (TLS 1.3 tickets)", transport: "doh", conn: "resume", write: writeMiss},
}

// encrypted reports whether the workload runs over TLS.
func (wl workload) encrypted() bool { return wl.transport != "udp" }

// systemsFor returns the systems that can serve wl, in the order given:
// direct is left out of the encrypted workloads, as the backends it stands
// for speak plain DNS only, and dnsdist out of DoQ (1.7.3 has none).
func (wl workload) systemsFor(systems []string) []string {
	var out []string
	for _, s := range systems {
		if s == "direct" && wl.encrypted() || s == "dnsdist" && wl.transport == "doq" {
			continue
		}
		out = append(out, s)
	}
	return out
}

func writeMiss(w io.Writer, salt string, _ *rand.Rand) error {
	for i := range missNames {
		if _, err := fmt.Fprintf(w, "m%d-%s.%s A\n", i, salt, testlab.RandZone); err != nil {
			return err
		}
	}
	return nil
}

func writeHit(w io.Writer, salt string, _ *rand.Rand) error {
	for i := range hitNames {
		if _, err := fmt.Fprintf(w, "h%d-%s.%s A\n", i, salt, testlab.RandZone); err != nil {
			return err
		}
	}
	return nil
}

func writeMix(w io.Writer, salt string, rng *rand.Rand) error {
	z := rand.NewZipf(rng, mixZipfS, 1, mixHotNames-1)
	for i := range mixLines {
		var err error
		if rng.Float64() < mixUnique {
			_, err = fmt.Fprintf(w, "u%d-%s.%s A\n", i, salt, testlab.RandZone)
		} else {
			_, err = fmt.Fprintf(w, "z%d-%s.%s A\n", z.Uint64(), salt, testlab.RandZone)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// writeDataFile writes the workload's data file at path.
func writeDataFile(path string, wl workload, salt string, rng *rand.Rand) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := wl.write(bw, salt, rng); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadSpec is one dnsperf run.
type loadSpec struct {
	server      string // host:port
	data        string // data file
	qps         int    // -Q; 0: as fast as dnsperf can (max q/s)
	dur         time.Duration
	clients     int    // -c: UDP sockets, i.e. source ports
	threads     int    // -T
	outstanding int    // -q: queries in flight at most
	latency     bool   // -v: one line per query, parsed for percentiles
	mode        string // -m: udp, dot or doh
	// timeout is -t, when an unanswered query counts as lost; 0: lostAfter.
	timeout time.Duration
	// gen "go" runs DoH on the harness's own HTTP/2 generator (dohgen.go)
	// instead of dnsperf: clients connections, outstanding streams each.
	gen    string
	dohGET bool // the Go generator's DoH uses GET ?dns= instead of POST
	// newConn: one new TLS connection per query (conngen.go), at most
	// outstanding open at once; resume: from a shared session cache.
	newConn, resume bool
}

// lostAfter is dnsperf's -t: a query unanswered this long counts as lost.
// Short, so a run that loses queries ends soon after -l; loopback answers
// take microseconds, so a second is only ever reached by a real loss.
const lostAfter = time.Second

// loadResult is what one dnsperf run measured.
type loadResult struct {
	sum    *testlab.DnsperfResult
	lat    []float64     // per-query latencies in microseconds (latency runs only)
	lost   int           // "> T" lines: queries that got no answer in time
	genCPU time.Duration // dnsperf's own CPU: the load generator competes
	// The harness's generators only (in lost too): connection, handshake
	// or HTTP failures; answers not matching their query; handshakes that
	// resumed a session; the first failure's error.
	failed, mismatched, resumed int
	firstErr                    error
}

// runLoad runs spec on the generator it asks for: dnsperf, or one of the
// harness's own (DoH pipelined over HTTP/2, a new connection per query).
func runLoad(ctx context.Context, spec loadSpec) (*loadResult, error) {
	switch {
	case spec.newConn:
		return runConnGen(ctx, spec)
	case spec.mode == "doh" && spec.gen == "go":
		return runDohGen(ctx, spec)
	case spec.mode == "doq":
		return runDoqGen(ctx, spec)
	}
	return runDnsperf(ctx, spec)
}

// runDnsperf runs dnsperf to completion. With spec.latency it streams the
// per-query lines (-v) instead of keeping them: at 50k q/s they come to
// several MB per run.
func runDnsperf(ctx context.Context, spec loadSpec) (*loadResult, error) {
	bin, err := testlab.LookBinary("dnsperf")
	if err != nil {
		return nil, err
	}
	host, port, ok := strings.Cut(spec.server, ":")
	if !ok {
		return nil, fmt.Errorf("dnsperf server %q: want host:port", spec.server)
	}
	args := []string{"-s", host, "-p", port, "-d", spec.data,
		"-l", strconv.FormatFloat(spec.dur.Seconds(), 'f', 2, 64),
		"-c", strconv.Itoa(spec.clients), "-T", strconv.Itoa(spec.threads),
		"-q", strconv.Itoa(spec.outstanding),
		"-t", strconv.FormatFloat(cmp.Or(spec.timeout, lostAfter).Seconds(), 'f', 1, 64)}
	if spec.mode != "" && spec.mode != "udp" {
		args = append(args, "-m", spec.mode)
	}
	if spec.qps > 0 {
		args = append(args, "-Q", strconv.Itoa(spec.qps))
	}
	if spec.latency {
		args = append(args, "-v")
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// Killed with us if the harness dies without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dnsperf: %w", err)
	}
	r := &loadResult{}
	summary := parseDnsperfStream(out, r)
	err = cmd.Wait()
	r.sum = testlab.ParseDnsperf(summary)
	if cmd.ProcessState != nil {
		r.genCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if err != nil {
		return r, fmt.Errorf("dnsperf %s: %w\n%s%s", strings.Join(args, " "), err, summary, stderr.String())
	}
	if r.sum.Completed == 0 {
		return r, fmt.Errorf("dnsperf %s: no query answered\n%s%s", strings.Join(args, " "), summary, stderr.String())
	}
	return r, nil
}

// parseDnsperfStream reads dnsperf's output: per-query lines ("> NOERROR
// name A 0.000075" or "> T name A" for a lost query) go into r, everything
// else is returned as the summary text for testlab.ParseDnsperf.
func parseDnsperfStream(out io.Reader, r *loadResult) string {
	var summary strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "> ") {
			summary.WriteString(line)
			summary.WriteByte('\n')
			continue
		}
		// Only the first and last fields matter; no full split, as the
		// harness shares the cores with what it measures.
		if strings.HasPrefix(line, "> T ") {
			r.lost++
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i > 2 {
			if s, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
				// dnsperf prints 1 us resolution; round away float noise.
				r.lat = append(r.lat, math.Round(s*1e6))
			}
		}
	}
	// Drain whatever is left so dnsperf never blocks on a full pipe.
	_, _ = io.Copy(io.Discard, out)
	return summary.String()
}
