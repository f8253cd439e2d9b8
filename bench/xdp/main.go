// Command xdp measures what dropping a blocklisted source in XDP saves
// against refusing the same traffic in the proxy, and what answering a
// cache hit from the XDP answer cache saves against the proxy's cache
// (hit.go): one anyfront in a network namespace, a UDP sender in another,
// joined by a veth. For each case it reports the packets per second
// offered and handled, and the CPU spent by anyfront (its /proc/PID/stat)
// and by softirq (/proc/stat) per packet. Root only; about two minutes.
// `make bench-xdp` runs it and writes bench/XDP.md (see docs/xdp.md).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	cebpf "github.com/cilium/ebpf"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Lab addresses, from the documentation ranges only.
const (
	vip        = "192.0.2.53"
	serverAddr = "198.51.100.1"
	senderAddr = "198.51.100.66" // blocklisted, and outside the acl
	adminPort  = 8053
	// clkTck is USER_HZ, the unit of /proc/stat and /proc/PID/stat: 100 on
	// every Linux architecture Go supports.
	clkTck = 100
	// batch is how many datagrams one sendmmsg carries.
	batch = 64
	// warmUp precedes every measurement: socket queues fill and the
	// sender reaches its pace.
	warmUp = 500 * time.Millisecond
)

// benchCase is one measured run.
type benchCase struct {
	name string
	xdp  string // "" (no xdp section: the proxy's ACL refuses), "driver", "generic"
	rate int    // offered packets/s; 0: as fast as the sender can
	hit  bool   // the sender is in the acl and its query a cache hit (hit.go)
	// dnsdist runs dnsdist's packet cache in anyfront's place (dnsdist.go);
	// with hit only.
	dnsdist bool
}

// result is what one run measured over its window.
type result struct {
	benchCase
	offered, handled float64 // packets/s
	anyfrontCPU      float64 // % of one core
	softirqCPU       float64 // % of one core
	busyCPU          float64 // whole machine, % of one core
	xdpNs            float64 // the XDP program's run time per packet (0: no XDP)
}

func main() {
	anyfront := flag.String("anyfront", "bin/anyfront", "the anyfront binary")
	out := flag.String("out", "bench/XDP.md", "where to write the table (- for stdout only)")
	window := flag.Duration("duration", 3*time.Second, "measured time per case (after 1s of warm-up)")
	rate := flag.Int("rate", 50000, "the fixed offered load, packets/s")
	rounds := flag.Int("rounds", 2, "runs of every case, interleaved; the least disturbed (lowest CPU per packet) is reported")
	only := flag.String("only", "", "run only the cases whose name contains this")
	flag.Parse()
	log.SetFlags(0)
	if os.Geteuid() != 0 {
		log.Fatal("bench-xdp needs root (network namespaces, XDP)")
	}
	// Processes are started from this thread, which lives as long as the
	// program: their Pdeathsig fires when the thread that started them
	// ends, and the namespace helpers below end theirs.
	runtime.LockOSThread()
	bin, err := filepath.Abs(*anyfront)
	if err != nil {
		log.Fatal(err)
	}
	// The XDP program's own run time per packet, from the kernel; only
	// while this is open.
	stats, err := cebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		log.Fatalf("enable BPF statistics: %v", err)
	}
	defer stats.Close()
	l, err := newLab()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var cases []benchCase
	for _, r := range []int{0, *rate} {
		load := "flood"
		if r > 0 {
			load = fmt.Sprintf("%dk pps", r/1000)
		}
		cases = append(cases,
			benchCase{"XDP drop (blocklist), driver mode, " + load, "driver", r, false, false},
			benchCase{"XDP drop (blocklist), generic mode, " + load, "generic", r, false, false},
			benchCase{"proxy ACL REFUSED (no XDP), " + load, "", r, false, false},
			benchCase{"XDP answer cache hit, driver mode, " + load, "driver", r, true, false},
			benchCase{"XDP answer cache hit, generic mode, " + load, "generic", r, true, false},
			benchCase{"proxy cache hit (no XDP), " + load, "", r, true, false},
			benchCase{"dnsdist packet cache hit, " + load, "", r, true, true},
		)
	}
	cases = slices.DeleteFunc(cases, func(c benchCase) bool { return !strings.Contains(c.name, *only) })
	// The machine is shared: other work lands in the same softirq and
	// busy counters. Of several interleaved runs of a case, the one with
	// the lowest CPU per packet is the least disturbed.
	results := make([]result, len(cases))
	for round := 0; round < max(*rounds, 1); round++ {
		for i, c := range cases {
			if ctx.Err() != nil {
				break
			}
			r, err := l.run(ctx, bin, c, *window)
			if err != nil {
				l.close()
				log.Fatalf("%s: %v", c.name, err)
			}
			log.Printf("%-45s offered %9.0f/s handled %9.0f/s anyfront %5.1f%% softirq %5.1f%% machine %5.1f%%",
				c.name, r.offered, r.handled, r.anyfrontCPU, r.softirqCPU, r.busyCPU)
			if round == 0 || r.perPacket() < results[i].perPacket() {
				results[i] = r
			}
		}
	}
	l.close()
	if ctx.Err() != nil {
		log.Fatal("interrupted")
	}
	md := report(results, *window, *rate, *rounds)
	fmt.Print(md)
	if *out != "-" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("wrote %s", *out)
	}
}

// perPacket is anyfront's and softirq CPU per handled packet, in µs.
func (r result) perPacket() float64 {
	if r.handled <= 0 {
		return math.Inf(1)
	}
	return (r.anyfrontCPU + r.softirqCPU) / 100 * 1e6 / r.handled
}

// lab is the two namespaces and the veth between them.
type lab struct {
	client, server     string
	clientIf, serverIf string
	dir                string
}

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func newLab() (*lab, error) {
	var rnd [3]byte
	rand.Read(rnd[:])
	base := "afb" + hex.EncodeToString(rnd[:])
	l := &lab{client: base + "c", server: base + "s", clientIf: base + "c", serverIf: base + "s"}
	dir, err := os.MkdirTemp("", "anyfront-bench-xdp-")
	if err != nil {
		return nil, err
	}
	l.dir = dir
	s, c := []string{"-n", l.server}, []string{"-n", l.client}
	steps := [][]string{
		{"netns", "add", l.server},
		{"netns", "add", l.client},
		{"link", "add", l.clientIf, "netns", l.client, "type", "veth", "peer", "name", l.serverIf, "netns", l.server},
		append(s, "link", "set", "lo", "up"),
		append(s, "addr", "add", vip+"/32", "dev", "lo"),
		append(s, "addr", "add", serverAddr+"/24", "dev", l.serverIf),
		append(s, "link", "set", l.serverIf, "up"),
		append(c, "link", "set", "lo", "up"),
		append(c, "addr", "add", senderAddr+"/24", "dev", l.clientIf),
		append(c, "link", "set", l.clientIf, "up"),
		append(c, "route", "add", vip+"/32", "via", serverAddr),
	}
	for _, st := range steps {
		if err := ipCmd(st...); err != nil {
			l.close()
			return nil, err
		}
	}
	return l, nil
}

// close deletes the namespaces (and with them the veth) and the temp dir.
func (l *lab) close() {
	for _, ns := range []string{l.client, l.server} {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			if err := ipCmd("netns", "del", ns); err != nil {
				log.Print(err)
			}
		}
	}
	os.RemoveAll(l.dir)
}

// inNS runs fn on a thread inside the namespace ns; the thread is
// discarded afterwards. Sockets fn opens stay in ns.
func inNS(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with us
		f, err := os.Open("/run/netns/" + ns)
		if err == nil {
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
		}
		if err == nil {
			err = fn()
		}
		errc <- err
	}()
	return <-errc
}

// config returns anyfront's config for c: the sender is outside the acl,
// and with XDP also in the blocklist, so XDP drops what the proxy would
// refuse. The backend does not exist: no query is ever forwarded.
func (l *lab) config(c benchCase) string {
	cfg := fmt.Sprintf(`listen: [{address: "%s:53"}]
acl: ["127.0.0.0/8"]
admin: {listen: "127.0.0.1:%d"}
pools:
  default:
    backends: [{name: r1, address: "127.0.0.1:5301"}]
`, vip, adminPort)
	if c.xdp != "" {
		cfg += fmt.Sprintf("xdp:\n  interface: %s\n  mode: %s\n  vips: [\"%s:53\"]\n  blocklist: [\"%s/32\"]\n",
			l.serverIf, c.xdp, vip, senderAddr)
	}
	return cfg
}

// run starts anyfront for c, floods it for a warm-up second and the
// window, and measures.
func (l *lab) run(ctx context.Context, bin string, c benchCase, window time.Duration) (result, error) {
	res := result{benchCase: c}
	cfgPath := filepath.Join(l.dir, "anyfront.yaml")
	cfg := l.config(c)
	if c.hit {
		cfg = l.hitConfig(c)
		stopBackend, err := l.startBackend()
		if err != nil {
			return res, err
		}
		defer stopBackend()
		if c.xdp == "driver" {
			detach, err := l.attachClientPass()
			if err != nil {
				return res, err
			}
			defer detach()
		}
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return res, err
	}
	logPath := filepath.Join(l.dir, "anyfront.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return res, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", l.server, bin, "-config", cfgPath)
	if c.dnsdist {
		cfgPath = filepath.Join(l.dir, "dnsdist.conf")
		if err := os.WriteFile(cfgPath, []byte(l.dnsdistConfig()), 0o644); err != nil {
			return res, err
		}
		cmd = l.dnsdistCommand(cfgPath)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()
	// A flooded proxy can take seconds to serve /metrics.
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = inNS(l.server, func() error {
				conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return conn, err
		},
	}}
	metric := `anyfront_proxy_local_answers_total{reason="acl_refused"}`
	if c.xdp != "" {
		metric = `anyfront_xdp_packets_total{verdict="blocked"}`
	}
	if c.hit {
		metric = hitMetric(c)
	}
	if c.dnsdist {
		metric = dnsdistHits
	}
	// Ready: the admin API answers and, with XDP, the program is attached.
	deadline := time.Now().Add(10 * time.Second)
	for {
		body, err := getMetrics(admin)
		if err == nil && (c.hit || strings.Contains(body, metric)) && (c.xdp == "" || strings.Contains(body, "anyfront_xdp_attached{")) {
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			return res, fmt.Errorf("%s exited: %v\n%s", cmd.Args[4], err, log)
		default:
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			return res, fmt.Errorf("%s not ready within 10s (%v)\n%s", cmd.Args[4], err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}

	var sent atomic.Uint64
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	senderErr := make(chan error, 1)
	go func() { senderErr <- l.send(sctx, c.rate, &sent) }()
	select {
	case err := <-senderErr:
		return res, fmt.Errorf("sender: %w", err)
	case <-time.After(warmUp): // warm-up: queues and caches at steady state
	}
	if c.hit {
		// The answer is cached, and with XDP published (once a second).
		if err := waitHits(func() (string, error) { return getMetrics(admin) }, metric, 10*time.Second); err != nil {
			return res, err
		}
	}

	type snap struct {
		at               time.Time
		sent, handled    float64
		proc, soft, busy float64 // clock ticks
		xdpRun           time.Duration
		xdpCount         uint64
	}
	var prog *cebpf.Program
	if c.xdp != "" {
		if prog, err = l.xdpProgram(); err != nil {
			return res, err
		}
		defer prog.Close()
	}
	take := func() (snap, error) {
		var s snap
		body, err := getMetrics(admin)
		if err != nil {
			return s, err
		}
		s.handled = metricValue(body, metric)
		if s.proc, err = procTicks(cmd.Process.Pid); err != nil {
			return s, err
		}
		if s.soft, s.busy, err = statTicks(); err != nil {
			return s, err
		}
		s.sent = float64(sent.Load())
		s.at = time.Now()
		if prog != nil {
			st, err := prog.Stats()
			if err != nil {
				return s, fmt.Errorf("XDP program statistics: %w", err)
			}
			s.xdpRun, s.xdpCount = st.Runtime, st.RunCount
		}
		return s, nil
	}
	a, err := take()
	if err != nil {
		return res, err
	}
	select {
	case err := <-senderErr:
		return res, fmt.Errorf("sender: %w", err)
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(window):
	}
	b, err := take()
	if err != nil {
		return res, err
	}
	cancel()
	if err := <-senderErr; err != nil && !errors.Is(err, context.Canceled) {
		return res, fmt.Errorf("sender: %w", err)
	}
	secs := b.at.Sub(a.at).Seconds()
	res.offered = (b.sent - a.sent) / secs
	res.handled = (b.handled - a.handled) / secs
	res.anyfrontCPU = 100 * (b.proc - a.proc) / clkTck / secs
	res.softirqCPU = 100 * (b.soft - a.soft) / clkTck / secs
	res.busyCPU = 100 * (b.busy - a.busy) / clkTck / secs
	if n := b.xdpCount - a.xdpCount; n > 0 {
		res.xdpNs = float64((b.xdpRun - a.xdpRun).Nanoseconds()) / float64(n)
	}
	return res, nil
}

// xdpProgram opens the XDP program attached to the server's veth, by the
// ID `ip -d link` shows ("prog/xdp id N").
func (l *lab) xdpProgram() (*cebpf.Program, error) {
	out, err := exec.Command("ip", "-n", l.server, "-d", "link", "show", "dev", l.serverIf).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip link show: %v: %s", err, out)
	}
	_, rest, ok := strings.Cut(string(out), "prog/xdp id ")
	if !ok {
		return nil, fmt.Errorf("no XDP program on %s:\n%s", l.serverIf, out)
	}
	id, err := strconv.Atoi(strings.Fields(rest)[0])
	if err != nil {
		return nil, fmt.Errorf("XDP program id in %q: %w", out, err)
	}
	return cebpf.NewProgramFromID(cebpf.ProgramID(id))
}

func getMetrics(c *http.Client) (string, error) {
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return string(b), err
}

// metricValue returns the value of the series named exactly series, or 0.
func metricValue(body, series string) float64 {
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// procTicks returns utime+stime of pid, all threads, in clock ticks.
func procTicks(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	u, _ := strconv.ParseFloat(f[11], 64) // field 14
	k, _ := strconv.ParseFloat(f[12], 64) // field 15
	return u + k, nil
}

// statTicks returns the machine's softirq ticks and all its busy ticks
// (everything but idle and iowait), summed over CPUs, from /proc/stat.
func statTicks() (soft, busy float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: %q", line)
	}
	for i := 1; i < len(f) && i <= 8; i++ {
		v, _ := strconv.ParseFloat(f[i], 64)
		if i == 4 || i == 5 {
			continue // idle, iowait
		}
		busy += v
		if i == 7 {
			soft = v
		}
	}
	return soft, busy, nil
}

// send offers the same A query to the VIP from the sender's address in
// the client namespace, rate packets/s (0: as fast as sendmmsg goes), in
// batches, until ctx ends. Answers (REFUSED) are never read: the client's
// receive buffer fills and the kernel drops the rest, at the same cost in
// both cases.
func (l *lab) send(ctx context.Context, rate int, sent *atomic.Uint64) error {
	var fd int
	err := inNS(l.client, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		src := &unix.SockaddrInet4{Addr: [4]byte(net.ParseIP(senderAddr).To4())}
		if err := unix.Bind(fd, src); err != nil {
			return err
		}
		return unix.Connect(fd, &unix.SockaddrInet4{Port: 53, Addr: [4]byte(net.ParseIP(vip).To4())})
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	q := new(dns.Msg).SetQuestion("www.demo.test.", dns.TypeA)
	q.Id = 0x4242
	pkt, err := q.Pack()
	if err != nil {
		return err
	}
	// One iovec for every message: the same query, batch times per call.
	iov := unix.Iovec{Base: &pkt[0]}
	iov.SetLen(len(pkt))
	type mmsghdr struct {
		hdr unix.Msghdr
		n   uint32
		_   [4]byte
	}
	msgs := make([]mmsghdr, batch)
	for i := range msgs {
		msgs[i].hdr.Iov = &iov
		msgs[i].hdr.SetIovlen(1)
	}
	runtime.LockOSThread() // one sender thread, not spread over Ps
	start := time.Now()
	var total uint64
	for ctx.Err() == nil {
		n := batch
		if rate > 0 {
			due := int64(time.Since(start).Seconds()*float64(rate)) - int64(total)
			if due <= 0 {
				time.Sleep(200 * time.Microsecond)
				continue
			}
			n = int(min(due, batch))
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(n), 0, 0, 0)
		switch e {
		case 0:
			total += uint64(r)
			sent.Store(total)
		case unix.EAGAIN, unix.ENOBUFS, unix.ECONNREFUSED, unix.EINTR:
			// A full queue, or an ICMP error from an earlier datagram:
			// the flood goes on.
		default:
			return fmt.Errorf("sendmmsg: %w", e)
		}
	}
	runtime.KeepAlive(pkt)
	return ctx.Err()
}

// report renders the results as bench/XDP.md.
func report(rs []result, window time.Duration, rate, rounds int) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("# XDP drop versus proxy ACL refusal, XDP answer cache versus proxy cache")
	w("")
	w("Generated by `make bench-xdp` (`go run ./bench/xdp -anyfront bin/anyfront -out bench/XDP.md -duration %v -rate %d -rounds %d`)", window, rate, rounds)
	w("on %s; %s.", time.Now().UTC().Format("2006-01-02 15:04 MST"), machine())
	w("")
	w("One anyfront in a network namespace, a UDP sender (sendmmsg, %d copies of one A query per call, one thread) in", batch)
	w("another, joined by a veth. In the drop and REFUSED rows the sender's address is outside `acl:`; in the XDP")
	w("cases it is also in `xdp.blocklist`, so the XDP program drops what the proxy would otherwise answer REFUSED.")
	w("In the cache-hit rows the sender is inside `acl:` and its query is answered from the cache: the proxy's")
	w("packet cache, or with `cache.xdp_entries` the XDP answer cache, to which the proxy published it (one backend")
	w("answered it once, before the measurement). The answers are not read; the sender's socket drops them, as")
	w("the REFUSED answers, at the same cost in every case. \"flood\" is as fast")
	w("as the sender goes; the other rows offer a fixed rate. Each run: %v of warm-up, then %v measured;", warmUp, window)
	w("every case ran %d times, interleaved, and the row is the run with the lowest CPU per packet (the one", rounds)
	w("least disturbed by other work on the machine).")
	w("")
	w("- *handled*: packets/s dropped by XDP (`anyfront_xdp_packets_total{verdict=\"blocked\"}`) or answered")
	w("  REFUSED by the proxy (`anyfront_proxy_local_answers_total{reason=\"acl_refused\"}`); in the cache-hit")
	w("  rows, answered by XDP (`anyfront_xdp_packets_total{verdict=\"answered\"}`) or from the proxy's cache")
	w("  (`anyfront_proxy_cache_events_total{event=\"hit\"}`). Offered minus handled is what the kernel dropped")
	w("  on the way (full socket buffers).")
	w("- *anyfront CPU*: the process's utime+stime (`/proc/PID/stat`, all threads), %% of one core.")
	w("- *softirq*: softirq time of the whole machine (`/proc/stat`), %% of one core; on a veth the sender's")
	w("  transmit runs the receiving side (and XDP) in softirq, so this is where XDP's own cost shows.")
	w("- *machine*: every busy CPU tick of the machine, %% of one core: the sender, and anything else running")
	w("  on the machine at the time, included.")
	w("- *µs/pkt*: anyfront CPU + softirq, per handled packet (tick-sampled: a rough figure at low rates).")
	w("- *XDP ns/pkt*: the program's own run time per packet, from the kernel's BPF statistics")
	w("  (`kernel.bpf_stats_enabled`, on during the run only; it adds two clock reads to each run).")
	w("")
	w("In the dnsdist rows dnsdist %s (Debian's) stands in anyfront's place: same namespace, VIP, backend and query,", dnsdistVersion())
	w("its packet cache answering (`dnsdist_cache_hits`), one UDP listener thread; *server CPU* is then dnsdist's.")
	w("")
	w("| case | offered pkt/s | handled pkt/s | server CPU | softirq | machine | µs/pkt (server + softirq) | XDP ns/pkt |")
	w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rs {
		per, xdp := "-", "-"
		if r.handled > 0 {
			per = fmt.Sprintf("%.2f", r.perPacket())
		}
		if r.xdpNs > 0 {
			xdp = fmt.Sprintf("%.0f", r.xdpNs)
		}
		w("| %s | %.0f | %.0f | %.1f%% | %.1f%% | %.1f%% | %s | %s |", r.name, r.offered, r.handled, r.anyfrontCPU, r.softirqCPU, r.busyCPU, per, xdp)
	}
	w("")
	w("In the flood rows XDP keeps up with whatever the one sender thread offers, so its handled rate is the")
	w("sender's limit, not XDP's; the proxy's is its own, and what it cannot take the kernel drops at its socket.")
	w("In driver mode the sender's end of the veth runs an XDP_PASS program in the cache-hit rows: native XDP_TX")
	w("frames reach a veth peer only when it runs XDP too.")
	w("Handled can exceed offered by a little: the two counters are read a moment apart.")
	w("Quote ratios, not absolute numbers: the machines are shared, and the sender competes for the same cores.")
	w("")
	w("## XDP answer cache / dnsdist packet cache (issue 11: <= 0.3x CPU per hit, >= 3x max hits/s)")
	w("")
	w("| load | mode | CPU per hit (server + softirq) | hits/s handled |")
	w("| --- | --- | ---: | ---: |")
	find := func(name string) *result {
		for i := range rs {
			if rs[i].name == name {
				return &rs[i]
			}
		}
		return nil
	}
	for _, load := range []string{"flood", fmt.Sprintf("%dk pps", rate/1000)} {
		dd := find("dnsdist packet cache hit, " + load)
		for _, mode := range []string{"driver", "generic"} {
			x := find("XDP answer cache hit, " + mode + " mode, " + load)
			if dd == nil || x == nil || dd.handled <= 0 {
				continue
			}
			w("| %s | %s | %.2fx | %.2fx |", load, mode, x.perPacket()/dd.perPacket(), x.handled/dd.handled)
		}
	}
	w("")
	w("At a fixed load, hits/s only shows that both kept up. In the flood rows XDP's rate is the one sender")
	w("thread's limit, so its ratio understates what XDP could take.")
	return b.String()
}

// dnsdistVersion is what `dnsdist --version` says first, or "".
func dnsdistVersion() string {
	out, err := exec.Command("dnsdist", "--version").Output()
	if err != nil {
		return ""
	}
	f := strings.Fields(string(out))
	if len(f) >= 2 {
		return f[1]
	}
	return ""
}

// machine describes the CPU and kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	rel := string(u.Release[:clen(u.Release[:])])
	load := "?"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	return fmt.Sprintf("%d CPUs (%s), Linux %s, %s; load average %s at the end of the run (other work on the machine shows there)",
		runtime.NumCPU(), model, rel, runtime.Version(), load)
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}
