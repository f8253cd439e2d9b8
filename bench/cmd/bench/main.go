// Command bench is `make bench`: it measures one unbound backend directly,
// dnsdist and anyfront side by side on this machine, with dnsperf as the
// load, over UDP, DoT and DoH, and writes the table to bench/RESULTS.md.
// With -profile it records CPU profiles of anyfront instead (make
// bench-profile). See bench/README.md.
//
// Usage:
//
//	go run ./bench/cmd/bench -anyfront bin/anyfront -out bench/RESULTS.md [-quick] [-workloads dot,doh]
//	go run ./bench/cmd/bench -anyfront bin/anyfront -profile bench/profiles
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
)

func main() { os.Exit(run()) }

// run does the work and returns the exit code, so every deferred cleanup
// (backends, the system under test, the temp dir) runs before exiting.
func run() int {
	var (
		anyfrontBin = flag.String("anyfront", "bin/anyfront", "anyfront binary (make build writes it)")
		baseBin     = flag.String("anyfront-base", "", "a second anyfront binary measured side by side as system anyfront-base (an A/B of two builds: e.g. the previous commit's)")
		out         = flag.String("out", "", "write the results (Markdown) to this file; always printed to stdout")
		quick       = flag.Bool("quick", false, "one short round (under 2 minutes): to check the harness, not to quote")
		rounds      = flag.Int("rounds", 3, "rounds; every system is measured once per workload per round, medians are reported")
		dur         = flag.Duration("duration", 5*time.Second, "length of each measured phase")
		warmup      = flag.Duration("warmup", time.Second, "warm-up at the first load before measuring, per process")
		loadsFlag   = flag.String("loads", "20000,50000", "fixed offered loads, q/s, comma-separated")
		dotLoads    = flag.String("dot-loads", "5000,10000", "fixed offered loads of the DoT workload, q/s")
		dohLoads    = flag.String("doh-loads", "1000,4000", "fixed offered loads of the DoH workload, q/s")
		dohGen      = flag.String("doh-gen", "go", "DoH load generator: go (the harness's own, on golang.org/x/net/http2: -doh-conns connections, -doh-streams in flight on each) or dnsperf (one query in flight per connection: dnsperf 2.10 loses answers otherwise, DNS-OARC/dnsperf#240)")
		dohConns    = flag.Int("doh-conns", 8, "DoH connections; with -doh-gen dnsperf also its threads and queries in flight, 32 unless given")
		dohStreams  = flag.Int("doh-streams", 16, "-doh-gen go: HTTP/2 streams (queries) in flight per connection at most")
		dohGET      = flag.Bool("doh-get", false, "-doh-gen go: send GET ?dns= instead of POST")
		connLoads   = flag.String("conn-loads", "200", "new TLS connections per second of the dotconn, dotresume, dohconn and dohresume workloads (one query each)")
		connClients = flag.Int("conn-clients", 32, "new-connection workloads: connections open at once at most (their max-rate run: concurrent clients); all from 127.0.0.1, so keep it under anyfront's proxy.tcp.max_conns_per_client (64)")
		clients     = flag.Int("clients", 8, "dnsperf -c: UDP sockets (source ports), so SO_REUSEPORT spreads them over workers")
		threads     = flag.Int("threads", 1, "dnsperf -T for the fixed loads (each is a sending and a receiving thread): kept low, the generator shares the cores")
		maxThreads  = flag.Int("max-threads", 1, "dnsperf -T for the max-rate run")
		outstanding = flag.Int("outstanding", 100, "dnsperf -q: queries in flight at most")
		listeners   = flag.Int("dnsdist-listeners", 1, "dnsdist UDP listener threads (1 is dnsdist's default; >1 adds reusePort listeners)")
		systemsFlag = flag.String("systems", strings.Join(systemNames, ","), "systems to measure, comma-separated")
		wlFlag      = flag.String("workloads", defaultWorkloads(), "workloads to run, comma-separated (with -profile: miss,hit unless given); fault needs root")
		profileDir  = flag.String("profile", "", "instead of the benchmark: CPU-profile anyfront on each workload at its first load and write pprof summaries into this directory (bench/profiles)")
		profileDur  = flag.Duration("profile-duration", 20*time.Second, "with -profile: how long each profile runs")
	)
	flag.Parse()
	o := options{rounds: *rounds, dur: *dur, warmup: *warmup, clients: *clients,
		threads: *threads, maxThreads: *maxThreads, outstanding: *outstanding, dohConns: *dohConns,
		dohGen: *dohGen, dohStreams: *dohStreams, dohGET: *dohGET, connClients: *connClients}
	set := map[string]bool{} // flags given on the command line
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.dohGen == "dnsperf" && !set["doh-conns"] {
		o.dohConns = 32 // one query in flight on each of dnsperf's threads
	}
	if o.dohGen != "go" && o.dohGen != "dnsperf" {
		return fail("-doh-gen: %q is neither go nor dnsperf", o.dohGen)
	}
	if *quick {
		// Set only what the user did not set explicitly.
		if !set["rounds"] {
			o.rounds = 1
		}
		if !set["duration"] {
			o.dur = 1500 * time.Millisecond
		}
		if !set["warmup"] {
			o.warmup = 500 * time.Millisecond
		}
	}
	var err error
	for _, lf := range []struct {
		name string
		s    string
		to   *[]int
	}{{"loads", *loadsFlag, &o.loads}, {"dot-loads", *dotLoads, &o.dotLoads}, {"doh-loads", *dohLoads, &o.dohLoads}, {"conn-loads", *connLoads, &o.connLoads}} {
		if *lf.to, err = parseLoads(lf.s); err != nil {
			return fail("-%s: %v", lf.name, err)
		}
	}
	systems, err := pick(*systemsFlag, systemNames)
	if err != nil {
		return fail("-systems: %v", err)
	}
	if *profileDir != "" && !set["workloads"] {
		*wlFlag = "miss,hit"
	}
	wantFault, rest := splitFault(*wlFlag)
	faultSkip := ""
	if wantFault || !set["workloads"] {
		// Asked for, or left out of the default list: say why not.
		faultSkip = faultCan()
		if faultSkip != "" {
			say("%s", faultSkip)
		}
	}
	if *profileDir != "" {
		wantFault = false
	}
	var wls []workload
	if rest != "" || !wantFault {
		if wls, err = pickWorkloads(rest); err != nil {
			return fail("-workloads: %v", err)
		}
	}
	if o.rounds < 1 || o.dur <= 0 || o.clients < 1 || o.threads < 1 || o.maxThreads < 1 || o.outstanding < 1 || o.dohConns < 1 || o.dohStreams < 1 || o.connClients < 1 || *listeners < 1 || *profileDur <= 0 {
		return fail("-rounds, -duration, -clients, -threads, -max-threads, -outstanding, -doh-conns, -doh-streams, -conn-clients, -dnsdist-listeners and -profile-duration must be positive")
	}
	if *profileDir != "" {
		systems = []string{"anyfront"}
	}

	// Ctrl-C or SIGTERM cancels ctx: dnsperf is killed by exec's context,
	// the current cell stops, and the deferred cleanups stop the rest.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	l := &lab{dnsdistLocal: *listeners, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6265_6e63_68))}
	if *baseBin != "" && *profileDir == "" {
		if l.anyfrontBase, err = filepath.Abs(*baseBin); err == nil {
			_, err = os.Stat(l.anyfrontBase)
		}
		if err != nil {
			return fail("-anyfront-base: %v", err)
		}
		systems = append(systems, "anyfront-base")
	}
	if slices.Contains(systems, "anyfront") {
		if l.anyfront, err = filepath.Abs(*anyfrontBin); err == nil {
			_, err = os.Stat(l.anyfront)
		}
		if err != nil {
			return fail("anyfront binary: %v (run make build first)", err)
		}
	}
	for _, name := range []string{"dnsperf", "unbound", "unbound-control", "dnsdist"} {
		p, err := testlab.LookBinary(name)
		if err != nil {
			return fail("%v (make bench installs it: scripts/install-deps.sh bench)", err)
		}
		if name == "dnsdist" {
			l.dnsdist = p
		}
	}
	if l.dir, err = os.MkdirTemp("", "anyfront-bench-"); err != nil {
		return fail("%v", err)
	}
	defer os.RemoveAll(l.dir)
	if slices.ContainsFunc(wls, workload.encrypted) {
		if l.cert, err = makeCert(l.dir); err != nil {
			return fail("TLS certificate: %v", err)
		}
	}
	anyfrontSum := ""
	if l.anyfront != "" {
		// Every cell starts a fresh anyfront: run a private copy, so a
		// make build during the run cannot mix two binaries in one table.
		if l.anyfront, anyfrontSum, err = copyBinary(l.anyfront, l.dir); err != nil {
			return fail("copy anyfront binary: %v", err)
		}
	}

	for i := range 2 {
		u, err := testlab.NewUnbound(testlab.UnboundOptions{Threads: 1})
		if err != nil {
			return fail("start backend r%d: %v", i+1, err)
		}
		defer u.Close()
		l.backends = append(l.backends, u)
		say("backend r%d: unbound on %s (pid %d)", i+1, u.Addr, u.PID())
	}

	if *profileDir != "" {
		return l.profileAll(ctx, o, wls, *profileDir, *profileDur, collectEnv(l.dnsdist, anyfrontSum))
	}

	start := time.Now()
	cells := 0
	for _, wl := range wls {
		cells += len(wl.systemsFor(systems)) * o.rounds
	}
	say("%d rounds x %d workloads = %d cells; phases of %v at %v q/s (DoT %v, DoH %v) and max",
		o.rounds, len(wls), cells, o.dur, o.loads, o.dotLoads, o.dohLoads)
	var results []cellResult
	for round := range o.rounds {
		for wi, wl := range wls {
			// Rotate the order each round (and per workload), so no system
			// always runs first or right after a given other one.
			order := rotate(wl.systemsFor(systems), round+wi)
			for _, sys := range order {
				if ctx.Err() != nil {
					say("interrupted: nothing written")
					return 130
				}
				c := l.runCell(ctx, o, round, sys, wl)
				if ctx.Err() != nil {
					say("interrupted: nothing written")
					return 130
				}
				results = append(results, c)
				say("round %d/%d %-4s %-8s %s  [%v elapsed]", round+1, o.rounds, wl.name, sys, c.summary(), time.Since(start).Round(time.Second))
			}
		}
	}

	var faults []faultResult
	if wantFault && faultSkip == "" {
		faults, err = l.runFault(ctx, o, systems, start)
		if ctx.Err() != nil {
			say("interrupted: nothing written")
			return 130
		}
		if err != nil {
			return fail("fault workload: %v", err)
		}
	}

	rep := report{
		date:             time.Now(),
		command:          commandLine(),
		opts:             o,
		env:              collectEnv(l.dnsdist, anyfrontSum),
		systems:          systems,
		wls:              wls,
		results:          results,
		elapsed:          time.Since(start),
		quick:            *quick,
		dnsdistListeners: *listeners,
	}
	text := ""
	if len(wls) > 0 {
		text = rep.markdown()
	} else {
		text = rep.header()
	}
	if wantFault || faultSkip != "" {
		text += "\n" + faultMarkdown(faults, systems, o.rounds, faultSkip)
	}
	fmt.Print(text)
	if *out != "" {
		old, _ := os.ReadFile(*out) // a missing file has no notes to keep
		if err := os.WriteFile(*out, []byte(keepNotes(text, string(old))), 0o644); err != nil {
			return fail("write %s: %v", *out, err)
		}
		say("wrote %s", *out)
	}
	for _, c := range results {
		if c.err != nil {
			return 1
		}
	}
	for _, c := range faults {
		if c.err != nil {
			return 1
		}
	}
	return 0
}

// defaultWorkloads is every workload, fault only where it can run (root).
func defaultWorkloads() string {
	wl := "miss,hit,mix,dot,doq,doh,dotconn,dotresume,dohconn,dohresume"
	if faultCan() == "" {
		wl += ",fault"
	}
	return wl
}

// splitFault takes "fault" out of a -workloads list: it runs apart from the
// others, on backends of its own.
func splitFault(s string) (fault bool, rest string) {
	var keep []string
	for _, f := range strings.Split(s, ",") {
		if strings.TrimSpace(f) == "fault" {
			fault = true
			continue
		}
		keep = append(keep, f)
	}
	return fault, strings.Join(keep, ",")
}

// notesMarker ends the generated part of the results file. What follows it
// (the lead's analysis: profiles, where the cost per query goes) is kept
// when the file is written again, so a rerun never erases it.
const notesMarker = "<!-- Notes below this line are written by hand and kept when make bench rewrites this file. -->"

// keepNotes returns the new generated text followed by the notes section
// of the old file, or by an empty notes section when it had none.
func keepNotes(generated, old string) string {
	notes := notesMarker + "\n"
	if i := strings.Index(old, notesMarker); i >= 0 {
		notes = old[i:]
	}
	return generated + "\n" + notes
}

// parseLoads reads "20000,50000".
func parseLoads(s string) ([]int, error) {
	var loads []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive rate", f)
		}
		loads = append(loads, n)
	}
	return loads, nil
}

// pick returns the comma-separated names of s, each of which must be in valid.
func pick(s string, valid []string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(valid, f) {
			return nil, fmt.Errorf("unknown %q (valid: %s)", f, strings.Join(valid, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty")
	}
	return out, nil
}

func pickWorkloads(s string) ([]workload, error) {
	var names []string
	for _, wl := range workloads {
		names = append(names, wl.name)
	}
	picked, err := pick(s, names)
	if err != nil {
		return nil, err
	}
	var out []workload
	for _, wl := range workloads {
		if slices.Contains(picked, wl.name) {
			out = append(out, wl)
		}
	}
	return out, nil
}

// rotate returns s rotated left by n.
func rotate(s []string, n int) []string {
	if len(s) == 0 {
		return nil // -systems direct on an encrypted workload: nothing to run
	}
	n %= len(s)
	return append(slices.Clone(s[n:]), s[:n]...)
}

// commandLine is the command that reproduces this run, as typed: go run
// leaves a temp binary in os.Args[0], so the package path is written.
func commandLine() string {
	args := []string{"go", "run", "./bench/cmd/bench"}
	for _, a := range os.Args[1:] {
		if strings.ContainsAny(a, " \t'\"$") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// say prints progress to stderr, so stdout carries only the table.
func say(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "bench: error: "+format+"\n", args...)
	return 1
}
