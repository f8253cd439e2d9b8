package main

import (
	"math"
	"testing"
)

// pprofTop is the shape of `go tool pprof -top` output (go1.26).
const pprofTop = `File: anyfront
Type: cpu
Duration: 6.76s, Total samples = 1.15s (17.02%)
Showing nodes accounting for 1.15s, 100% of 1.15s total
      flat  flat%   sum%        cum   cum%
     0.94s 81.74% 81.74%      0.94s 81.74%  internal/runtime/syscall/linux.Syscall6
     0.03s  2.61% 84.35%      0.09s  7.83%  github.com/anyfront/anyfront/proxy.(*shard).handleQuery
     0.02s  1.74% 86.09%      0.02s  1.74%  runtime.exitsyscall
     0.01s  0.87% 86.96%      0.01s  0.87%  github.com/anyfront/anyfront/proxy.(*msgView).parseHeader (inline)
      10ms  0.87% 87.83%      0.01s  0.87%  crypto/tls.(*Conn).write
      10ms  0.87% 88.70%      0.01s  0.87%  runtime.futex
         0     0% 88.70%      0.58s 50.43%  github.com/anyfront/anyfront/proxy.(*Proxy).Run.func1
`

func TestGroupProfile(t *testing.T) {
	total, groups, ours := groupProfile(pprofTop)
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if !near(total, 1.02) {
		t.Errorf("total = %v, want 1.02 (header lines are not samples)", total)
	}
	for g, want := range map[string]float64{groupKernel: 0.95, groupRuntime: 0.02, groupOurs: 0.04, groupOther: 0.01} {
		if !near(groups[g], want) {
			t.Errorf("%s = %v, want %v", g, groups[g], want)
		}
	}
	if len(ours) != 2 || ours[0].fn != "github.com/anyfront/anyfront/proxy.(*shard).handleQuery" {
		t.Errorf("own functions = %+v, want handleQuery first and no zero rows", ours)
	}
}

func TestClassify(t *testing.T) {
	for fn, want := range map[string]string{
		"syscall.Syscall6":                                            groupKernel,
		"internal/runtime/syscall/linux.Syscall6":                     groupKernel,
		"runtime.epollwait":                                           groupKernel,
		"runtime.mallocgc":                                            groupRuntime,
		"internal/poll.runtime_pollWait":                              groupRuntime,
		"sync.(*Mutex).Lock (inline)":                                 groupRuntime,
		"github.com/anyfront/anyfront/proxy/policy.HashName (inline)": groupOurs,
		"github.com/miekg/dns.(*Msg).Unpack":                          groupOther,
		"crypto/internal/fips140/aes/gcm.seal":                        groupOther,
	} {
		if got := classify(fn); got != want {
			t.Errorf("classify(%q) = %q, want %q", fn, got, want)
		}
	}
}

func TestParsePprofDuration(t *testing.T) {
	for s, want := range map[string]float64{"0": 0, "0.94s": 0.94, "10ms": 0.01, "250us": 250e-6, "1.5mins": 90} {
		if got, ok := parsePprofDuration(s); !ok || math.Abs(got-want) > 1e-12 {
			t.Errorf("parsePprofDuration(%q) = %v, %v; want %v", s, got, ok, want)
		}
	}
	if _, ok := parsePprofDuration("flat"); ok {
		t.Error(`parsePprofDuration("flat") accepted a header`)
	}
}

func TestDoHKeepsOneQueryPerConnection(t *testing.T) {
	o := options{clients: 8, threads: 1, outstanding: 100, maxThreads: 1, dohConns: 32, dohGen: "dnsperf"}
	for _, wl := range workloads {
		if wl.conn != "" || wl.transport == "doq" {
			continue // the harness's own generators, TestBaseSpecOwnGenerators
		}
		s := o.baseSpec(wl, "127.0.0.1:1", "data")
		if s.mode != wl.transport {
			t.Errorf("%s: dnsperf mode %q, want %q", wl.name, s.mode, wl.transport)
		}
		if wl.transport == "doh" {
			if s.clients != 32 || s.threads != 32 || s.outstanding != 32 || o.maxThreadsFor(wl) != 32 {
				t.Errorf("doh: -T %d -c %d -q %d (max -T %d), want 32 each", s.threads, s.clients, s.outstanding, o.maxThreadsFor(wl))
			}
		} else if s.outstanding != 100 || s.clients != 8 {
			t.Errorf("%s: -c %d -q %d, want the flags' 8 and 100", wl.name, s.clients, s.outstanding)
		}
	}
}
