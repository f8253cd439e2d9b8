package healthcheck

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// responderEnv, when set to a count, makes the test binary a responder
// serving that many loopback ports instead of running tests: the benchmark
// runs it as a child so that its CPU is not counted as the Checker's.
const responderEnv = "ANYFRONT_HEALTHCHECK_RESPONDER"

// benchBackends and benchInterval are the load the issue sets: 1,000
// backends probed every second.
const (
	benchBackends = 1000
	benchInterval = time.Second
)

// BenchmarkChecker1000 checks 1,000 backends at 1s intervals against a
// responder in another process and reports the Checker's process CPU as a
// share of one core (cpu%). Each op is one second of checking, so run it
// with -benchtime=Nx:
//
//	go test ./healthcheck -run '^$' -bench Checker1000 -benchtime 10x
func BenchmarkChecker1000(b *testing.B) {
	ports := startResponder(b, benchBackends)
	var sb strings.Builder
	sb.WriteString("pools:\n  default:\n    healthcheck: {qname: health.test., interval: 1s, timeout: 500ms}\n    backends:\n")
	for i, p := range ports {
		fmt.Fprintf(&sb, "      - {name: b%04d, address: \"127.0.0.1:%d\"}\n", i, p)
	}
	cfg, err := config.Parse("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	st, err := state.New()
	if err != nil {
		b.Fatal(err)
	}
	if err := st.ApplyConfig(cfg); err != nil {
		b.Fatal(err)
	}
	c, err := New(cfg, Deps{Store: st, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	// Start measuring once every backend has a verdict: the first round
	// (and its store writes) is start-up, not the steady state.
	waitFor(b, 3*benchInterval, func() (bool, string) {
		n := 0
		for i := range ports {
			if s, _ := c.Status(fmt.Sprintf("b%04d", i)); s.Checked {
				n++
			}
		}
		return n == len(ports), fmt.Sprintf("%d of %d backends checked", n, len(ports))
	})
	probes := func() (sent, failed uint64) {
		for i := range ports {
			s, _ := c.Status(fmt.Sprintf("b%04d", i))
			sent, failed = sent+s.ProbesSent, failed+s.ProbesFailed
		}
		return sent, failed
	}
	sent0, failed0 := probes()
	cpu0, wall0 := processCPU(b), time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		time.Sleep(benchInterval) // the measured period: one interval of checking
	}
	b.StopTimer()
	cpu, wall := processCPU(b)-cpu0, time.Since(wall0)
	sent, failed := probes()
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu%")
	b.ReportMetric(float64(sent-sent0)/wall.Seconds(), "probes/s")
	if f := failed - failed0; f > 0 {
		b.Errorf("%d probes failed against a responder that answers every one", f)
	}
}

// processCPU is the user and system CPU this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startResponder runs this test binary as a responder child serving n
// ports and returns them; the child exits when its stdin closes.
func startResponder(b *testing.B, n int) []int {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), responderEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill() // by PID, in case it did not notice
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	ports := make([]int, 0, n)
	for len(ports) < n && sc.Scan() {
		p, err := strconv.Atoi(sc.Text())
		if err != nil {
			b.Fatalf("responder said %q", sc.Text())
		}
		ports = append(ports, p)
	}
	if len(ports) < n {
		b.Fatalf("responder gave %d of %d ports: %v", len(ports), n, sc.Err())
	}
	return ports
}

// responderMain serves the count of ports in responderEnv on 127.0.0.1,
// answering every query NOERROR with one A record, until stdin closes.
func responderMain() int {
	n, err := strconv.Atoi(os.Getenv(responderEnv))
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "responder: bad count:", err)
		return 2
	}
	var wg sync.WaitGroup
	conns := make([]*net.UDPConn, 0, n)
	for range n {
		conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
		if err != nil {
			fmt.Fprintln(os.Stderr, "responder:", err)
			return 1
		}
		conns = append(conns, conn)
		fmt.Println(conn.LocalAddr().(*net.UDPAddr).Port)
		wg.Go(func() { respond(conn) })
	}
	io.Copy(io.Discard, os.Stdin) // returns when the parent goes away
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	return 0
}

// respond answers each query in place: QR and RA set, one answer record
// pointing back at the question's name (A 192.0.2.1, TTL 0).
func respond(conn *net.UDPConn) {
	buf := make([]byte, 512)
	rr := []byte{0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4, 192, 0, 2, 1}
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf[:512-len(rr)])
		if err != nil {
			return
		}
		if n < headerLen {
			continue
		}
		buf[2] |= 0x80 // QR
		buf[3] = 0x80  // RA, NOERROR
		binary.BigEndian.PutUint16(buf[6:], 1)
		n += copy(buf[n:], rr)
		conn.WriteToUDPAddrPort(buf[:n], from)
	}
}
