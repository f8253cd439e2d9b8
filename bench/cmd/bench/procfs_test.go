package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// Fields after the command: state ppid pgrp session tty tpgid flags
	// minflt cminflt majflt cmajflt utime(14) stime(15) cutime cstime ...
	tests := []struct {
		name string
		in   string
		want time.Duration
		bad  bool
	}{
		{name: "utime plus stime in USER_HZ ticks",
			in:   "1234 (dnsdist) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 100 0 0",
			want: 325 * 10 * time.Millisecond},
		{name: "command with spaces and parentheses",
			in:   "42 (my (odd) proc) R 1 42 42 0 -1 0 0 0 0 0 7 3 9 9 20 0 1 0 1 0 0",
			want: 100 * time.Millisecond},
		{name: "children's times are not counted",
			in:   "1 (x) S 0 1 1 0 -1 0 0 0 0 0 1 1 500 500 20 0 1 0 1 0 0",
			want: 20 * time.Millisecond},
		{name: "truncated line", in: "1 (x) S 0 1 1 0 -1 0 0 0", bad: true},
		{name: "no command", in: "1 x S 0", bad: true},
		{name: "non-numeric utime", in: "1 (x) S 0 1 1 0 -1 0 0 0 0 0 abc 1 0 0", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseProcStat(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("parseProcStat(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseProcStat(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseStatusKB(t *testing.T) {
	status := "Name:\tanyfront\nVmPeak:\t 1300000 kB\nVmHWM:\t   11700 kB\nVmRSS:\t   11000 kB\n"
	if got, err := parseStatusKB(status, "VmHWM"); err != nil || got != 11700*1024 {
		t.Fatalf("VmHWM = %d, %v; want %d", got, err, 11700*1024)
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Fatal("missing key: want an error")
	}
	if _, err := parseStatusKB("VmHWM:\t12 MB\n", "VmHWM"); err == nil {
		t.Fatal("unexpected unit: want an error")
	}
}

func TestParseMachineStat(t *testing.T) {
	in := "cpu  100 5 50 800 20 3 2 1 7 0\ncpu0 50 2 25 400 10 1 1 0 3 0\n"
	m, err := parseMachineStat(in)
	if err != nil {
		t.Fatal(err)
	}
	// busy = user nice system irq softirq steal; guest is inside user.
	if want := (100 + 5 + 50 + 3 + 2 + 1) * tick; m.busy != want {
		t.Errorf("busy = %v, want %v", m.busy, want)
	}
	if want := (100 + 5 + 50 + 800 + 20 + 3 + 2 + 1) * tick; m.total != want {
		t.Errorf("total = %v, want %v", m.total, want)
	}
	if _, err := parseMachineStat("intr 1 2 3\n"); err == nil {
		t.Error("no cpu line: want an error")
	}
}

// The parsers must agree with the kernel's real files, not only with the
// samples above.
func TestProcOfSelf(t *testing.T) {
	pid := os.Getpid()
	if _, err := procCPU(pid); err != nil {
		t.Fatalf("procCPU(self): %v", err)
	}
	if hwm, err := procHWM(pid); err != nil || hwm <= 0 {
		t.Fatalf("procHWM(self) = %d, %v", hwm, err)
	}
	m, err := readMachineCPU()
	if err != nil || m.total <= 0 || m.busy > m.total {
		t.Fatalf("readMachineCPU = %+v, %v", m, err)
	}
}

func TestParseDnsperfStream(t *testing.T) {
	out := strings.Join([]string{
		"DNS Performance Testing Tool",
		"[Status] Sending queries (to 127.0.0.1:5300)",
		"> NOERROR a.rand.demo.test A 0.000075",
		"> T b.rand.demo.test A",
		"> SERVFAIL c.rand.demo.test A 0.001500",
		"Statistics:",
		"  Queries sent:         3",
		"  Queries completed:    2 (66.67%)",
		"  Queries lost:         1 (33.33%)",
		"  Queries per second:   1999.268268",
	}, "\n")
	r := &loadResult{}
	summary := parseDnsperfStream(strings.NewReader(out), r)
	if r.lost != 1 || len(r.lat) != 2 || r.lat[0] != 75 || r.lat[1] != 1500 {
		t.Fatalf("lost %d, latencies %v; want 1, [75 1500]", r.lost, r.lat)
	}
	if strings.Contains(summary, "> ") || !strings.Contains(summary, "Queries lost:") {
		t.Fatalf("summary should hold every line but the per-query ones:\n%s", summary)
	}
}
