package birdlab

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/anyfront/anyfront/internal/testlab"
)

// NetstatCounters returns the kernel's protocol counters of the namespace
// ns (nil: the current one) from /proc/net/netstat and /proc/net/snmp,
// keyed "Group.Name", e.g. "TcpExt.TCPMD5Failure" or
// "TcpExt.TCPMinTTLDrop". A BGP lab reads them to see why a session does
// not come up: a segment dropped for a bad TCP-MD5 signature or a low TTL
// leaves no other trace, neither side logs it.
func NetstatCounters(ns *testlab.Netns) (map[string]uint64, error) {
	var out bytes.Buffer
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		var data []byte
		var err error
		if ns == nil {
			data, err = os.ReadFile(f)
		} else {
			// /proc/net shows the namespace of the process reading it.
			var cmd *exec.Cmd
			if cmd, err = ns.Command("cat", f); err == nil {
				data, err = cmd.Output()
			}
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f, err)
		}
		out.Write(data)
	}
	return parseNetstat(out.Bytes())
}

// parseNetstat reads the /proc/net/netstat format: per group, a line of
// names and a line of values, both starting with "Group:".
func parseNetstat(data []byte) (map[string]uint64, error) {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	var names []string
	var group string
	for sc.Scan() {
		g, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil || g != group {
			group, names = g, f
			continue
		}
		if len(f) != len(names) {
			return nil, fmt.Errorf("netstat group %s: %d names, %d values", g, len(names), len(f))
		}
		for i, v := range f {
			// Some snmp values (Tcp MaxConn) are negative: skip them.
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				m[g+"."+names[i]] = n
			}
		}
		names = nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no counters in %d bytes", len(data))
	}
	return m, nil
}
