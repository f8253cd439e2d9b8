package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of the tick counters in /proc/PID/stat and /proc/stat.
// The kernel exports them in USER_HZ, which is 100 on every Linux ABI
// regardless of CONFIG_HZ, so it is a constant rather than a sysconf call
// (which Go's standard library does not offer).
const userHZ = 100

// tick is one USER_HZ tick: the resolution of every CPU figure here. At 20k
// q/s and ~20 us/q a 5 s phase burns ~200 ticks, so the error is about 0.5%.
const tick = time.Second / userHZ

// procCPU returns the CPU time (user + system, all threads, including
// threads that have exited) that process pid has used so far.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat reads utime + stime from the text of /proc/PID/stat. The
// command name (field 2) is in parentheses and may itself contain spaces
// and parentheses, so the fields are counted from the last ')'.
func parseProcStat(s string) (time.Duration, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("proc stat: no ')' in %q", s)
	}
	// After ")": field 3 (state) is f[0], so field n is f[n-3].
	f := strings.Fields(s[i+1:])
	const utimeField, stimeField = 14, 15
	if len(f) < stimeField-2 {
		return 0, fmt.Errorf("proc stat: %d fields after the command name, want at least %d", len(f), stimeField-2)
	}
	var ticks uint64
	for _, n := range []int{utimeField, stimeField} {
		v, err := strconv.ParseUint(f[n-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc stat field %d: %w", n, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * tick, nil
}

// procHWM returns the process's peak resident set size (VmHWM) in bytes.
func procHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseStatusKB(string(b), "VmHWM")
}

// parseStatusKB returns the value of a "Key:   1234 kB" line of
// /proc/PID/status, in bytes.
func parseStatusKB(s, key string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("proc status %s: unexpected value %q", key, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("proc status %s: %w", key, err)
		}
		return n * 1024, nil
	}
	return 0, fmt.Errorf("proc status: no %s line", key)
}

// machineCPU is the whole machine's CPU time from /proc/stat: busy (every
// state but idle and iowait) and total, summed over all CPUs.
type machineCPU struct {
	busy, total time.Duration
}

// readMachineCPU reads /proc/stat.
func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineStat(string(b))
}

// parseMachineStat reads the aggregate "cpu" line of /proc/stat: user nice
// system idle iowait irq softirq steal (guest time is already counted in
// user, so the guest columns are skipped).
func parseMachineStat(s string) (machineCPU, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("proc stat: first line %q is not the cpu total", line)
	}
	var m machineCPU
	for i, name := range []string{"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"} {
		v, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("proc stat cpu %s: %w", name, err)
		}
		d := time.Duration(v) * tick
		m.total += d
		if name != "idle" && name != "iowait" {
			m.busy += d
		}
	}
	return m, nil
}
