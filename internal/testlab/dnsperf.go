package testlab

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DnsperfOptions is one dnsperf run.
type DnsperfOptions struct {
	Server   string        // host:port
	Duration time.Duration // -l
	QPS      int           // -Q: offered load cap; 0 = as fast as it can
	Clients  int           // -c; 0 = 4
	Timeout  time.Duration // -t: when a query counts as lost; 0 = dnsperf's 5 s
	// Outstanding (-q) caps the queries in flight at once; 0 = dnsperf's
	// 100. dnsperf starts by sending up to that many in one burst.
	Outstanding int
	// Names to query (type A), cycled; empty means 10,000 distinct random
	// names under RandZone, so no cache could answer them.
	Names []string
}

// DnsperfResult is what dnsperf reported.
type DnsperfResult struct {
	Sent, Completed, Lost int
	Rcodes                map[string]int
	QPS                   float64
	AvgLatency            time.Duration
	Output                string
}

// StartDnsperf starts dnsperf in the background; wait on the returned
// function for its result. The process is killed when ctx ends.
func StartDnsperf(ctx context.Context, dir string, o DnsperfOptions) (func() (*DnsperfResult, error), error) {
	bin, err := LookBinary("dnsperf")
	if err != nil {
		return nil, err
	}
	names := o.Names
	if len(names) == 0 {
		for i := 0; i < 10000; i++ {
			names = append(names, fmt.Sprintf("n%d-%d.%s", i, time.Now().UnixNano()%100000, RandZone))
		}
	}
	data := filepath.Join(dir, fmt.Sprintf("dnsperf-%d.txt", time.Now().UnixNano()))
	var b strings.Builder
	for _, n := range names {
		b.WriteString(n + " A\n")
	}
	if err := os.WriteFile(data, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	host, port, ok := strings.Cut(o.Server, ":")
	if !ok {
		return nil, fmt.Errorf("dnsperf server %q: want host:port", o.Server)
	}
	clients := o.Clients
	if clients == 0 {
		clients = 4
	}
	args := []string{"-s", host, "-p", port, "-d", data, "-l", strconv.FormatFloat(o.Duration.Seconds(), 'f', 1, 64), "-c", strconv.Itoa(clients)}
	if o.QPS > 0 {
		args = append(args, "-Q", strconv.Itoa(o.QPS))
	}
	if o.Timeout > 0 {
		args = append(args, "-t", strconv.FormatFloat(o.Timeout.Seconds(), 'f', 1, 64))
	}
	if o.Outstanding > 0 {
		args = append(args, "-q", strconv.Itoa(o.Outstanding))
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return func() (*DnsperfResult, error) {
		err := cmd.Wait()
		r := ParseDnsperf(out.String())
		if err != nil {
			return r, fmt.Errorf("dnsperf: %w\n%s", err, out.String())
		}
		return r, nil
	}, nil
}

var (
	dpSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	dpCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	dpLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	dpQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	dpLatency   = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+)`)
	dpRcode     = regexp.MustCompile(`([A-Z]+) (\d+) \(`)
)

// ParseDnsperf reads dnsperf's summary.
func ParseDnsperf(out string) *DnsperfResult {
	r := &DnsperfResult{Rcodes: map[string]int{}, Output: out}
	atoi := func(re *regexp.Regexp) int {
		if m := re.FindStringSubmatch(out); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
		return 0
	}
	r.Sent, r.Completed, r.Lost = atoi(dpSent), atoi(dpCompleted), atoi(dpLost)
	if m := dpQPS.FindStringSubmatch(out); m != nil {
		r.QPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := dpLatency.FindStringSubmatch(out); m != nil {
		f, _ := strconv.ParseFloat(m[1], 64)
		r.AvgLatency = time.Duration(f * float64(time.Second))
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "Response codes:") {
			continue
		}
		for _, m := range dpRcode.FindAllStringSubmatch(line, -1) {
			n, _ := strconv.Atoi(m[2])
			r.Rcodes[m[1]] = n
		}
	}
	return r
}
