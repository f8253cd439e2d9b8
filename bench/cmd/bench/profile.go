package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// profileTopNodes is how many functions each written top list keeps: the
// long tail below them is under a percent each and lives in the groups.
const profileTopNodes = 40

// profileAll is -profile: for each workload, a fresh anyfront with
// -cpuprofile, warmed up, loaded at the workload's first load for d, then
// stopped (which writes the profile); the summaries go into dir.
func (l *lab) profileAll(ctx context.Context, o options, wls []workload, dir string, d time.Duration, e env) int {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fail("go tool pprof: %v", err)
	}
	var sums []profileSummary
	for _, wl := range wls {
		say("profiling anyfront on %s at %d q/s for %v", wl.name, o.loadsFor(wl)[0], d)
		s, err := l.profileOne(ctx, o, wl, d, goBin, dir)
		if ctx.Err() != nil {
			say("interrupted: nothing written")
			return 130
		}
		if err != nil {
			return fail("profile %s: %v", wl.name, err)
		}
		sums = append(sums, s)
		say("%s: %s", wl.name, s.oneLine())
	}
	path := filepath.Join(dir, "SUMMARY.md")
	if err := os.WriteFile(path, []byte(profileMarkdown(sums, commandLine(), e)), 0o644); err != nil {
		return fail("%v", err)
	}
	say("wrote %s and %d top lists", path, len(sums))
	return 0
}

// profileSummary is one workload's profile, grouped.
type profileSummary struct {
	wl      workload
	qps     int
	dur     time.Duration
	cpuPerQ float64            // us per answered query, from /proc, over the loaded phase
	total   float64            // seconds of samples
	groups  map[string]float64 // seconds per group
	ours    []profileRow       // anyfront's own functions, largest first
}

type profileRow struct {
	fn   string
	flat float64 // seconds
}

// Groups, in the order the summary shows them.
const (
	groupKernel  = "kernel (system calls)"
	groupRuntime = "Go runtime (scheduler, GC, memory, locks)"
	groupOurs    = "anyfront code"
	groupOther   = "other (standard library, miekg/dns, crypto, ...)"
)

var profileGroups = []string{groupKernel, groupRuntime, groupOurs, groupOther}

func (l *lab) profileOne(ctx context.Context, o options, wl workload, d time.Duration, goBin, dir string) (profileSummary, error) {
	sum := profileSummary{wl: wl, qps: o.loadsFor(wl)[0], dur: d}
	data := filepath.Join(l.dir, "data-"+wl.name+".txt")
	if err := writeDataFile(data, wl, fmt.Sprintf("%x", l.rng.Uint32()), l.rng); err != nil {
		return sum, err
	}
	prof := filepath.Join(l.dir, wl.name+".pprof")
	s, err := l.startProxy(ctx, "anyfront", l.anyfront, wl, func(conf string) []string {
		return []string{"-config", conf, "-cpuprofile", prof}
	}, l.anyfrontConfig)
	if err != nil {
		return sum, fmt.Errorf("start: %w", err)
	}
	base := o.baseSpec(wl, s.addr, data)
	warm := base
	warm.qps, warm.dur = sum.qps, o.warmup
	if _, err := runDnsperf(ctx, warm); err != nil {
		s.close()
		return sum, fmt.Errorf("warm-up: %w", err)
	}
	spec := base
	spec.qps, spec.dur = sum.qps, d
	p, err := l.measure(ctx, s, spec)
	// SIGTERM: anyfront stops its profile and writes it on the way out.
	s.close()
	if err != nil {
		return sum, err
	}
	sum.cpuPerQ = p.cpuPerQ
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		return sum, fmt.Errorf("no profile written (did anyfront exit cleanly?): %v", err)
	}

	pprof := func(args ...string) ([]byte, error) {
		out, err := exec.CommandContext(ctx, goBin, append(append([]string{"tool", "pprof"}, args...), prof)...).Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof %s: %w", strings.Join(args, " "), err)
		}
		return out, nil
	}
	nodes := "-nodecount=" + strconv.Itoa(profileTopNodes)
	top, err := pprof("-top", nodes)
	if err != nil {
		return sum, err
	}
	// Sorted by cumulative time, the same profile shows which loops the
	// system calls come from.
	cum, err := pprof("-top", "-cum", nodes)
	if err != nil {
		return sum, err
	}
	text := fmt.Sprintf("# anyfront CPU profile: %s, dnsperf -Q %d for %v (after start-up and %v warm-up, which the profile also covers)\n# %.1f us CPU per answered query over the loaded phase (/proc/PID/stat)\n# groups in SUMMARY.md\n\n## go tool pprof -top %s\n\n%s\n## go tool pprof -top -cum %s\n\n%s",
		wl.title, sum.qps, d, o.warmup, sum.cpuPerQ, nodes, top, nodes, cum)
	if err := os.WriteFile(filepath.Join(dir, wl.name+".top.txt"), []byte(text), 0o644); err != nil {
		return sum, err
	}
	// Every function, for the groups: the written list stops at the top.
	all, err := pprof("-top", "-nodecount=100000", "-nodefraction=0")
	if err != nil {
		return sum, err
	}
	sum.total, sum.groups, sum.ours = groupProfile(string(all))
	return sum, nil
}

// groupProfile sums the flat samples of a pprof -top listing by group.
// Flat time is charged to the function the sample was taken in, so a
// sample inside a system call is charged to the syscall stub: that is the
// kernel's share, socket work and thread wake-ups included.
func groupProfile(top string) (total float64, groups map[string]float64, ours []profileRow) {
	groups = map[string]float64{}
	for _, line := range strings.Split(top, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") || !strings.HasSuffix(f[4], "%") {
			continue // header lines
		}
		flat, ok := parsePprofDuration(f[0])
		if !ok {
			continue
		}
		fn := strings.Join(f[5:], " ")
		g := classify(fn)
		groups[g] += flat
		total += flat
		if g == groupOurs && flat > 0 {
			ours = append(ours, profileRow{fn: fn, flat: flat})
		}
	}
	slices.SortFunc(ours, func(a, b profileRow) int {
		switch {
		case a.flat > b.flat:
			return -1
		case a.flat < b.flat:
			return 1
		}
		return strings.Compare(a.fn, b.fn)
	})
	return total, groups, ours
}

// kernelLeaves are the functions that enter the kernel: a sample taken in
// one is time spent in (or on the way through) a system call.
var kernelLeaves = []string{
	"syscall.Syscall", "syscall.Syscall6", "syscall.RawSyscall", "syscall.RawSyscall6",
	"syscall.rawSyscallNoError", "syscall.rawVforkSyscall",
	"internal/runtime/syscall.Syscall6", "internal/runtime/syscall/linux.Syscall6", "runtime/internal/syscall.Syscall6",
	"golang.org/x/sys/unix.Syscall", "golang.org/x/sys/unix.Syscall6", "golang.org/x/sys/unix.RawSyscall", "golang.org/x/sys/unix.RawSyscallNoError",
	"runtime.futex", "runtime.epollwait", "runtime.epollctl", "runtime.read", "runtime.write1", "runtime.usleep",
	"runtime.osyield", "runtime.nanosleep", "runtime.madvise", "runtime.mmap", "runtime.sysMmap", "runtime.munmap",
	"runtime.sysMunmap", "runtime.tgkill", "runtime.getpid", "runtime.gettid", "runtime.rtsigprocmask", "runtime.sigaltstack",
	"runtime.timer_settime", "runtime.setitimer", "runtime.clone", "runtime.exitThread", "runtime.sched_getaffinity",
}

// classify puts a pprof function name into one of profileGroups.
func classify(fn string) string {
	fn = strings.TrimSuffix(fn, " (inline)")
	switch {
	case slices.Contains(kernelLeaves, fn):
		return groupKernel
	case strings.HasPrefix(fn, "github.com/anyfront/anyfront/"):
		return groupOurs
	case strings.HasPrefix(fn, "runtime.") || strings.HasPrefix(fn, "internal/runtime/") ||
		strings.HasPrefix(fn, "runtime/internal/") || strings.HasPrefix(fn, "sync.") ||
		strings.HasPrefix(fn, "sync/atomic.") || strings.HasPrefix(fn, "internal/sync.") ||
		strings.HasPrefix(fn, "internal/poll."): // the netpoller's side of file descriptors
		return groupRuntime
	}
	return groupOther
}

// parsePprofDuration reads pprof's "1.23s", "450ms", "10us", "0".
func parsePprofDuration(s string) (float64, bool) {
	if s == "0" {
		return 0, true
	}
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"mins", 60}, {"hrs", 3600}, {"min", 60}, {"ms", 1e-3}, {"us", 1e-6}, {"µs", 1e-6}, {"ns", 1e-9}, {"s", 1}} {
		// Longest first: "mins" also ends in "ns" and "s".
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f * u.scale, err == nil
		}
	}
	return 0, false
}

// oneLine is the progress line for a profile.
func (s profileSummary) oneLine() string {
	var parts []string
	for _, g := range profileGroups {
		parts = append(parts, fmt.Sprintf("%s %.0f%%", strings.SplitN(g, " ", 2)[0], s.share(g)*100))
	}
	return fmt.Sprintf("%.1f us/q; %s", s.cpuPerQ, strings.Join(parts, ", "))
}

func (s profileSummary) share(g string) float64 {
	if s.total == 0 {
		return 0
	}
	return s.groups[g] / s.total
}

// profileMarkdown renders bench/profiles/SUMMARY.md.
func profileMarkdown(sums []profileSummary, command string, e env) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Where anyfront's CPU goes, per query")
	w("")
	w("Written by `%s` (`make bench-profile`) on %s. Each workload: a fresh anyfront with `-cpuprofile`, dnsperf at a fixed load; `WORKLOAD.top.txt` beside this file is `go tool pprof -top` and `-top -cum` of that profile.", command, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	w("")
	w("anyfront %s; %s; %d CPUs (%s), kernel %s.", e.anyfront, e.goVer, e.nproc, e.cpuModel, e.kernel)
	w("")
	w("Samples are grouped by the function they were taken in (pprof's *flat* time): **kernel** is time in system-call stubs (`syscall.Syscall6`, `runtime.futex`, `runtime.epollwait`, ...), i.e. the socket path and thread sleeps and wake-ups in the kernel; **Go runtime** is the scheduler, garbage collector, allocator, locks and netpoller; **anyfront code** is this module's packages; **other** is the rest (standard library, miekg/dns, crypto). µs/q is the group's share times the CPU per query measured from `/proc/PID/stat` over the same loaded phase (the profile also covers start-up and warm-up, a small part of its samples).")
	w("")
	head := []string{"group"}
	for _, s := range sums {
		head = append(head, fmt.Sprintf("%s @%s: share", s.wl.name, kqps(float64(s.qps))), "µs/q")
	}
	w("| %s |", strings.Join(head, " | "))
	w("|%s", strings.Repeat(" --- |", len(head)))
	for _, g := range profileGroups {
		row := []string{g}
		for _, s := range sums {
			row = append(row, fmt.Sprintf("%.0f%%", s.share(g)*100), fmt.Sprintf("%.1f", s.share(g)*s.cpuPerQ))
		}
		w("| %s |", strings.Join(row, " | "))
	}
	row := []string{"**total**"}
	for _, s := range sums {
		row = append(row, fmt.Sprintf("%.1f s sampled", s.total), fmt.Sprintf("**%.1f**", s.cpuPerQ))
	}
	w("| %s |", strings.Join(row, " | "))
	w("")
	for _, s := range sums {
		w("## %s: anyfront's own functions (flat)", s.wl.name)
		w("")
		w("| function | share of all samples |")
		w("| --- | --- |")
		for i, r := range s.ours {
			if i == 10 {
				break
			}
			w("| `%s` | %.1f%% |", r.fn, 100*r.flat/s.total)
		}
		w("")
	}
	return b.String()
}
