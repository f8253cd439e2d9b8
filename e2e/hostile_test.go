package e2e

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// Hostile input end to end (issue 8): a running anyfront, real unbound
// backends, and what the internet sends. Each test checks the daemon is
// still serving afterwards and that goroutines and fds return to baseline.

// hostileIdle is the TCP idle timeout the hostile tests configure: short, so
// slowloris and idle-connection tests end quickly.
const hostileIdle = 2 * time.Second

// hostileBody is a pool on the given backend addresses with fast health
// checks, a cache, short timeouts, and TCP bounds the tests can reach.
func hostileBody(maxConns int, addrs ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "proxy:\n  timeout: 300ms\n  retries: 1\n  tcp: {max_conns: %d, max_conns_per_client: 5000, idle_timeout: %s}\n", maxConns, hostileIdle)
	b.WriteString("pools:\n  default:\n    policy: roundrobin\n    backends:\n")
	for i, a := range addrs {
		fmt.Fprintf(&b, "      - {name: r%d, address: %q}\n", i+1, a)
	}
	b.WriteString("    healthcheck: {qname: \"health.anyfront.test.\", qtype: A, interval: 1s, timeout: 500ms, rise: 1, fall: 3}\n")
	b.WriteString("    cache: {size: 10000}\n")
	return b.String()
}

// metrics scrapes /metrics into series -> value (the series as printed,
// labels included).
func (n *node) metrics() map[string]float64 {
	n.t.Helper()
	resp, err := readGet(n.admin + "/metrics")
	if err != nil {
		n.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func (n *node) metric(name string) float64 { return n.metrics()[name] }

// baseline is what must come back after hostile traffic.
type baseline struct{ goroutines, fds float64 }

func (n *node) sample() baseline {
	m := n.metrics()
	return baseline{m["go_goroutines"], m["anyfront_process_open_fds"]}
}

// baseline waits for goroutines and fds to hold still (the daemon's
// components finish starting) and returns them.
func (n *node) baseline() baseline {
	prev := n.sample()
	for i := 0; i < 20; i++ {
		time.Sleep(150 * time.Millisecond)
		cur := n.sample()
		if cur == prev {
			return cur
		}
		prev = cur
	}
	return prev
}

// backToBaseline waits until goroutines and fds are within a small slack of
// b (health-check and HTTP keep-alive goroutines come and go).
func (n *node) backToBaseline(b baseline, within time.Duration) {
	n.t.Helper()
	var last baseline
	start := time.Now()
	for {
		last = n.sample()
		if last.goroutines <= b.goroutines+5 && last.fds <= b.fds+3 {
			n.t.Logf("back to baseline in %v: goroutines %v (was %v), fds %v (was %v)", time.Since(start).Round(time.Millisecond), last.goroutines, b.goroutines, last.fds, b.fds)
			return
		}
		if time.Since(start) > within {
			n.t.Fatalf("not back to baseline after %v: goroutines %v (was %v), fds %v (was %v)", within, last.goroutines, b.goroutines, last.fds, b.fds)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// udpAsk sends raw and returns the first answer within wait, or nil.
func udpAsk(t *testing.T, addr string, raw []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(raw); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	k, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:k]
}

func mkQuery(name string, qtype uint16, id uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = id
	return m
}

func mustPack(t *testing.T, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitServing waits until a plain query is answered (backends checked up).
func waitServing(n *node) {
	n.t.Helper()
	q, _ := mkQuery("www.demo.test.", dns.TypeA, 4242).Pack()
	n.waitFor("a plain query to be answered", 10*time.Second, func() bool {
		raw := udpAsk(n.t, n.dns, q, 300*time.Millisecond)
		var m dns.Msg
		return raw != nil && m.Unpack(raw) == nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0
	})
}

// requireServing checks a plain query is answered correctly over UDP.
func requireServing(t *testing.T, addr string) {
	t.Helper()
	raw := udpAsk(t, addr, mustPack(t, mkQuery("www.demo.test.", dns.TypeA, 4242)), 2*time.Second)
	var m dns.Msg
	if raw == nil || m.Unpack(raw) != nil || m.Id != 4242 || m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
		t.Fatalf("a plain query is no longer answered: %v", raw)
	}
}

// TestHostileUDP sends every kind of malformed or unusual UDP query and
// checks what comes back against DESIGN.md's validation rules.
func TestHostileUDP(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	n := startNode(t, hostileBody(100, r1.Addr.String()))
	waitServing(n)
	base := n.baseline()

	valid := mkQuery("www.demo.test.", dns.TypeA, 0x1111)
	valid.SetEdns0(1232, true)
	vraw := mustPack(t, valid)
	qEnd := 12 + len("www.demo.test.") + 1 + 4

	t.Run("random bytes are dropped or answered as the query they happen to be", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		c, err := net.Dial("udp", n.dns)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		sent := map[uint16]bool{}
		for i := 0; i < 3000; i++ {
			b := make([]byte, rng.IntN(600))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			if len(b) >= 2 {
				sent[binary.BigEndian.Uint16(b)] = true
			}
			_, _ = c.Write(b)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 65535)
		answers := 0
		for {
			k, err := c.Read(buf)
			if err != nil {
				break
			}
			answers++
			if k < 12 || buf[2]&0x80 == 0 || !sent[binary.BigEndian.Uint16(buf)] {
				t.Errorf("answer %x is not a response to anything sent", buf[:min(k, 16)])
			}
		}
		t.Logf("3000 random datagrams, %d answers", answers)
	})
	t.Run("every truncation of a valid query", func(t *testing.T) {
		for i := 0; i < len(vraw); i++ {
			raw := udpAsk(t, n.dns, vraw[:i], 150*time.Millisecond)
			if i < qEnd {
				if raw != nil {
					t.Errorf("cut at %d (inside header or question): answered %x", i, raw)
				}
				continue
			}
			// The question is whole: forwarded as sent, the backend answers.
			if raw != nil && (binary.BigEndian.Uint16(raw) != 0x1111 || !bytes.EqualFold(raw[12:qEnd], vraw[12:qEnd])) {
				t.Errorf("cut at %d: answer does not match the query: %x", i, raw)
			}
		}
	})
	header := func(id, flags, qd, an, ns, ar uint16) []byte {
		b := make([]byte, 12)
		for i, v := range []uint16{id, flags, qd, an, ns, ar} {
			binary.BigEndian.PutUint16(b[2*i:], v)
		}
		return b
	}
	question := vraw[12:qEnd]
	long63 := append([]byte{64}, bytes.Repeat([]byte{'a'}, 64)...)
	long255 := bytes.Repeat(append([]byte{50}, bytes.Repeat([]byte{'b'}, 50)...), 6)
	withRest := func(h []byte, parts ...[]byte) []byte {
		for _, p := range parts {
			h = append(h, p...)
		}
		return h
	}
	type want int
	const (
		none want = iota
		formerr
		notimp
		notimpNoQ
		answered
	)
	for _, tt := range []struct {
		name string
		raw  []byte
		want want
	}{
		{"QR=1 is not answered", withRest(header(1, 0x8100, 1, 0, 0, 0), question), none},
		// Issue 16: TC=1 goes to the backend, which judges it (unbound: FORMERR).
		{"TC=1 in a query gets the backend's FORMERR", withRest(header(2, 0x0300, 1, 0, 0, 0), question), formerr},
		{"QDCOUNT 0 is FORMERR", header(3, 0x0100, 0, 0, 0, 0), formerr},
		{"QDCOUNT 2 is FORMERR", withRest(header(4, 0x0100, 2, 0, 0, 0), question, question), formerr},
		{"a compression loop is dropped", withRest(header(5, 0x0100, 1, 0, 0, 0), []byte{0xC0, 12, 0, 1, 0, 1}), none},
		{"a forward pointer is dropped", withRest(header(6, 0x0100, 1, 0, 0, 0), []byte{0xC0, 18, 0, 1, 0, 1, 3, 'c', 'o', 'm', 0}), none},
		{"a label over 63 is dropped", withRest(header(7, 0x0100, 1, 0, 0, 0), long63, []byte{0, 0, 1, 0, 1}), none},
		{"a name over 255 is dropped", withRest(header(8, 0x0100, 1, 0, 0, 0), long255, []byte{0, 0, 1, 0, 1}), none},
		{"opcode IQUERY is NOTIMP", withRest(header(9, 1<<11|0x0100, 1, 0, 0, 0), question), notimp},
		{"opcode 3 is NOTIMP", withRest(header(10, 3<<11|0x0100, 1, 0, 0, 0), question), notimp},
		{"opcode 15 is NOTIMP", withRest(header(11, 15<<11|0x0100, 1, 0, 0, 0), question), notimp},
		// RFC 8906 §3.1.4: the opcode is judged before QDCOUNT.
		{"header-only opcode 15 is NOTIMP", header(14, 15<<11, 0, 0, 0, 0), notimpNoQ},
		{"unknown class is forwarded and answered", withRest(header(12, 0x0100, 1, 0, 0, 0), question[:len(question)-2], []byte{0x04, 0xD2}), answered},
		{"class CHAOS is forwarded and answered", withRest(header(13, 0x0100, 1, 0, 0, 0), question[:len(question)-2], []byte{0, 3}), answered},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := udpAsk(t, n.dns, tt.raw, 400*time.Millisecond)
			if tt.want == none {
				if raw != nil {
					t.Fatalf("answered %x", raw)
				}
				return
			}
			var m dns.Msg
			if raw == nil {
				t.Fatal("no answer")
			}
			if err := m.Unpack(raw); err != nil {
				t.Fatalf("answer does not parse: %v", err)
			}
			if m.Id != binary.BigEndian.Uint16(tt.raw) || !m.Response {
				t.Fatalf("header %v", m.MsgHdr)
			}
			switch tt.want {
			case formerr:
				if m.Rcode != dns.RcodeFormatError {
					t.Errorf("rcode %s, want FORMERR", dns.RcodeToString[m.Rcode])
				}
			case notimp:
				if m.Rcode != dns.RcodeNotImplemented || len(m.Question) != 1 || m.Opcode != int(tt.raw[2]>>3&0xF) {
					t.Errorf("got %v, want NOTIMP echoing the question and opcode", &m)
				}
			case notimpNoQ:
				if m.Rcode != dns.RcodeNotImplemented || len(m.Question) != 0 || m.RecursionAvailable {
					t.Errorf("got %v, want NOTIMP without question or RA", &m)
				}
			case answered:
				if len(m.Question) != 1 || !bytes.Equal(raw[12:12+len(tt.raw)-12], tt.raw[12:]) {
					t.Errorf("answer to another question: %v", &m)
				}
			}
		})
	}

	// EDNS is passed through: anyfront's answer must equal the backend's
	// direct answer in rcode (extended included) and options.
	ednsCase := func(t *testing.T, m *dns.Msg) (*dns.Msg, *dns.Msg) {
		raw := mustPack(t, m)
		via := udpAsk(t, n.dns, raw, time.Second)
		direct := udpAsk(t, r1.Addr.String(), raw, time.Second)
		var a, d dns.Msg
		if via == nil || a.Unpack(via) != nil {
			t.Fatalf("no answer through anyfront: %x", via)
		}
		if direct == nil || d.Unpack(direct) != nil {
			t.Fatalf("no answer from the backend directly: %x", direct)
		}
		if a.Rcode != d.Rcode || (a.IsEdns0() == nil) != (d.IsEdns0() == nil) {
			t.Fatalf("through anyfront %v\ndirect %v", &a, &d)
		}
		if a.IsEdns0() != nil && fmt.Sprint(optCodes(a.IsEdns0())) != fmt.Sprint(optCodes(d.IsEdns0())) {
			t.Fatalf("options %v through anyfront, %v direct", optCodes(a.IsEdns0()), optCodes(d.IsEdns0()))
		}
		return &a, &d
	}
	t.Run("EDNS version 1 gets the backend's BADVERS", func(t *testing.T) {
		m := mkQuery("www.demo.test.", dns.TypeA, 0x2222)
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
		a, _ := ednsCase(t, m)
		if a.Rcode != dns.RcodeBadVers {
			t.Errorf("rcode %s, want BADVERS", dns.RcodeToString[a.Rcode])
		}
	})
	t.Run("unknown EDNS options are passed to the backend, which does not echo them", func(t *testing.T) {
		m := mkQuery("www.demo.test.", dns.TypeA, 0x3333)
		m.SetEdns0(1232, true)
		m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte("hello")})
		a, _ := ednsCase(t, m)
		if a.Rcode != dns.RcodeSuccess || !a.IsEdns0().Do() {
			t.Errorf("got %v", a)
		}
	})
	requireServing(t, n.dns)
	if m := n.metrics(); m[`anyfront_proxy_dropped_total{reason="bad_question"}`] == 0 {
		t.Error("malformed questions were not counted")
	}
	n.backToBaseline(base, 5*time.Second)
}

func optCodes(o *dns.OPT) []uint16 {
	var c []uint16
	for _, x := range o.Option {
		c = append(c, x.Option())
	}
	return c
}

// TestCachedAnswerTooBigForUDP: an answer cached from a TCP query (or from
// a UDP client with a large EDNS buffer) must still be truncated for a UDP
// client with a smaller buffer (DESIGN.md: answers that do not fit go back
// with TC=1).
func TestCachedAnswerTooBigForUDP(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	n := startNode(t, hostileBody(100, r1.Addr.String()))
	waitServing(n)
	q := mkQuery(testlab.BigName, dns.TypeTXT, 0x5151)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(q, n.dns)
	if err != nil || len(r.Answer) == 0 {
		t.Fatalf("TCP query: %v %v", err, r)
	}
	raw := udpAsk(t, n.dns, mustPack(t, mkQuery(testlab.BigName, dns.TypeTXT, 0x5252)), time.Second)
	if raw == nil {
		t.Fatal("no UDP answer")
	}
	if len(raw) > 512 {
		t.Fatalf("regression (fixed bug): a UDP client without EDNS got a %d-byte answer from the cache (filled by a TCP query): proxy/front.go returns cache hits without truncating to v.maxUDPResponse(); truncate hits in the UDP path as handleAnswer does (truncateTo), or skip the cache when the entry exceeds the client's limit", len(raw))
	}
	var m dns.Msg
	if err := m.Unpack(raw); err != nil || !m.Truncated {
		t.Errorf("want TC=1: %v %v", err, &m)
	}
}

// warmTCP opens the backend TCP connections anyfront keeps (proxy.tcp.
// backend_conns) with a burst of TCP queries, so a baseline includes them.
func warmTCP(n *node) {
	n.t.Helper()
	warm := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	var ww sync.WaitGroup
	for i := 0; i < 16; i++ {
		ww.Add(1)
		go func() {
			defer ww.Done()
			_, _, _ = warm.Exchange(mkQuery(fmt.Sprintf("w%d.%s", i, testlab.RandZone), dns.TypeA, uint16(i)), n.dns)
		}()
	}
	ww.Wait()
	n.waitFor("warm-up connections to close", 5*time.Second, func() bool { return n.metric("anyfront_proxy_tcp_connections") == 0 })
}

// tcpFrame frames a message for TCP.
func tcpFrame(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func readFrame(c net.Conn) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	_, err := io.ReadFull(c, b)
	return b, err
}

// closedWithin reports whether the server closes c (EOF or reset) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			ne, ok := err.(net.Error)
			return !(ok && ne.Timeout())
		}
	}
}

// TestHostileTCP covers the TCP front end's bounds.
func TestHostileTCP(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	const maxConns = 300
	n := startNode(t, hostileBody(maxConns, r1.Addr.String()))
	waitServing(n)
	warmTCP(n)
	base := n.baseline()
	dial := func(t *testing.T) *net.TCPConn {
		c, err := net.DialTimeout("tcp", n.dns, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	valid := mustPack(t, mkQuery("www.demo.test.", dns.TypeA, 77))

	t.Run("a length prefix larger than what follows, then close", func(t *testing.T) {
		c := dial(t)
		_, _ = c.Write(append([]byte{0x10, 0x00}, valid...))
		c.Close()
	})
	t.Run("a zero-length message closes the connection", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		_, _ = c.Write([]byte{0, 0})
		if !closedWithin(c, time.Second) {
			t.Error("still open after a zero-length message")
		}
	})
	t.Run("slowloris is cut by the idle timeout", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		frame := tcpFrame(valid)
		start := time.Now()
		var cutAfter atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			if closedWithin(c, 10*time.Second) {
				cutAfter.Store(int64(time.Since(start)))
			}
		}()
	loop:
		for _, b := range frame {
			if _, err := c.Write([]byte{b}); err != nil {
				break
			}
			select {
			case <-done:
				break loop
			case <-time.After(time.Second):
			}
		}
		<-done
		d := time.Duration(cutAfter.Load())
		if d == 0 {
			t.Fatal("a one-byte-per-second client was never cut off")
		}
		if d > hostileIdle+1500*time.Millisecond {
			t.Errorf("cut after %v, idle timeout %v", d, hostileIdle)
		}
		t.Logf("slowloris cut after %v", d.Round(time.Millisecond))
	})
	t.Run("100 pipelined queries are all answered", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		var buf []byte
		for i := 0; i < 100; i++ {
			name := fmt.Sprintf("p%d.%s", i, testlab.RandZone)
			qt := dns.TypeA
			if i%10 == 0 {
				name, qt = testlab.BigName, dns.TypeTXT
			}
			buf = append(buf, tcpFrame(mustPack(t, mkQuery(name, qt, uint16(1000+i))))...)
		}
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		seen := map[uint16]bool{}
		order := 0
		for i := 0; i < 100; i++ {
			b, err := readFrame(c)
			if err != nil {
				t.Fatalf("after %d answers: %v", i, err)
			}
			var m dns.Msg
			if err := m.Unpack(b); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) == 0 {
				t.Fatalf("bad answer %v %v", err, &m)
			}
			if int(m.Id) != 1000+i {
				order++
			}
			seen[m.Id] = true
		}
		if len(seen) != 100 {
			t.Errorf("%d distinct answers", len(seen))
		}
		t.Logf("100 pipelined answers, %d out of order", order)
	})
	t.Run("a half-closed connection gets its answers", func(t *testing.T) {
		c := dial(t)
		defer c.Close()
		var buf []byte
		for i := 0; i < 5; i++ {
			buf = append(buf, tcpFrame(mustPack(t, mkQuery(fmt.Sprintf("h%d.%s", i, testlab.RandZone), dns.TypeA, uint16(i+1))))...)
		}
		_, _ = c.Write(buf)
		_ = c.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		for i := 0; i < 5; i++ {
			if _, err := readFrame(c); err != nil {
				t.Fatalf("answer %d: %v", i, err)
			}
		}
		if _, err := readFrame(c); err != io.EOF {
			t.Errorf("after the answers: %v, want EOF", err)
		}
	})
	t.Run("2000 idle connections: the bound holds and others are served", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := 0; i < 2000; i++ {
			c, err := net.DialTimeout("tcp", n.dns, 2*time.Second)
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			conns = append(conns, c)
		}
		open := n.metric("anyfront_proxy_tcp_connections")
		t.Logf("2000 dialed, anyfront holds %v (bound %d)", open, maxConns)
		if open > maxConns {
			t.Errorf("anyfront holds %v TCP connections, bound %d", open, maxConns)
		}
		requireServing(t, n.dns) // UDP unaffected
		// Once the idle ones time out, TCP serves again.
		n.waitFor("idle connections to time out", hostileIdle+5*time.Second, func() bool {
			return n.metric("anyfront_proxy_tcp_connections") == 0
		})
		c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
		if r, _, err := c.Exchange(mkQuery("www.demo.test.", dns.TypeA, 9), n.dns); err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("TCP after the idle flood: %v %v", err, r)
		}
	})
	requireServing(t, n.dns)
	n.waitFor("TCP connections to close", 5*time.Second, func() bool { return n.metric("anyfront_proxy_tcp_connections") == 0 })
	n.backToBaseline(base, 5*time.Second)
}

// badBackend is a UDP responder that misbehaves by the query's first label:
//
//	wrongid-*   answers with another ID
//	wrongq-*    answers another question
//	wrongsrc-*  answers from another socket
//	late-*      answers correctly, but after the retry was answered
//	tc-*        answers TC=1 with no records
//	cut-*       answers a datagram cut inside its answer record
//	big-*       answers 3,000 bytes whatever the client's buffer
//	some-N-*    answers only even N
//
// Every answer it gives carries badA, which therefore must never reach a
// client, except from big- and some- (correct answers) where it gives
// testlab.RandA. Health checks are answered properly.
type badBackend struct {
	conn, other *net.UDPConn
	seen        sync.Map // mode -> *atomic.Int64
	wg          sync.WaitGroup
	idMu        sync.Mutex
	ids         []uint16 // query IDs anyfront used, in arrival order
}

const badA = "192.0.2.66"

func startBadBackend(t *testing.T) *badBackend {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	o, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &badBackend{conn: c, other: o}
	b.wg.Add(1)
	go b.serve()
	t.Cleanup(func() { c.Close(); o.Close(); b.wg.Wait() })
	return b
}

func (b *badBackend) count(mode string) int64 {
	v, _ := b.seen.LoadOrStore(mode, new(atomic.Int64))
	return v.(*atomic.Int64).Load()
}

func (b *badBackend) serve() {
	defer b.wg.Done()
	buf := make([]byte, 4096)
	for {
		k, from, err := b.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		var q dns.Msg
		if q.Unpack(buf[:k]) != nil || len(q.Question) != 1 {
			continue
		}
		name := strings.ToLower(q.Question[0].Name)
		r := new(dns.Msg)
		r.SetReply(&q)
		addA := func(a string) {
			rr, _ := dns.NewRR(q.Question[0].Name + " 60 IN A " + a)
			r.Answer = append(r.Answer, rr)
		}
		if name == testlab.HealthName {
			addA(testlab.HealthA)
			out, _ := r.Pack()
			_, _ = b.conn.WriteToUDP(out, from)
			continue
		}
		mode, _, _ := strings.Cut(name, "-")
		b.idMu.Lock()
		b.ids = append(b.ids, q.Id)
		b.idMu.Unlock()
		v, _ := b.seen.LoadOrStore(mode, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
		send := func(m *dns.Msg, c *net.UDPConn) {
			out, _ := m.Pack()
			_, _ = c.WriteToUDP(out, from)
		}
		switch mode {
		case "wrongid":
			addA(badA)
			r.Id ^= 0x5555
			send(r, b.conn)
		case "wrongq":
			addA(badA)
			r.Question[0].Name = "evil." + testlab.RandZone
			send(r, b.conn)
		case "wrongsrc":
			addA(badA)
			send(r, b.other)
		case "late":
			addA(badA)
			go func() { time.Sleep(700 * time.Millisecond); send(r, b.conn) }()
		case "tc":
			r.Truncated = true
			send(r, b.conn)
		case "cut":
			// Right ID and question, but the datagram ends inside
			// the answer record, without TC.
			addA(badA)
			out, _ := r.Pack()
			_, _ = b.conn.WriteToUDP(out[:len(out)-3], from)
		case "big":
			for i := 0; i < 30; i++ {
				rr, _ := dns.NewRR(fmt.Sprintf("%s 60 IN TXT \"%0100d\"", q.Question[0].Name, i))
				r.Answer = append(r.Answer, rr)
			}
			send(r, b.conn)
		case "some":
			var num int
			fmt.Sscanf(strings.Split(name, "-")[1], "%d", &num)
			if num%2 == 0 {
				addA(testlab.RandA)
				send(r, b.conn)
			}
		}
	}
}

// TestMisbehavingBackend puts a lying backend beside an honest unbound: no
// wrong answer reaches a client, every query is answered exactly once, and
// the in-flight table empties.
func TestMisbehavingBackend(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	good := testlab.StartUnbound(t, testlab.UnboundOptions{})
	bad := startBadBackend(t)
	n := startNode(t, hostileBody(100, bad.conn.LocalAddr().String(), good.Addr.String()))
	n.waitFor("both backends up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Health == "up" && b["r2"].Health == "up"
	})
	waitServing(n)
	base := n.baseline()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var problems []string
	report := func(f string, a ...any) {
		mu.Lock()
		problems = append(problems, fmt.Sprintf(f, a...))
		mu.Unlock()
	}
	modes := []string{"wrongid", "wrongq", "wrongsrc", "late", "tc", "big", "some"}
	for _, mode := range modes {
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				name := fmt.Sprintf("%s-%d.%s", mode, i, testlab.RandZone)
				qt := dns.TypeA
				if mode == "big" || mode == "tc" {
					qt = dns.TypeTXT
				}
				q := mkQuery(name, qt, uint16(rand.Uint32()))
				raw, _ := q.Pack()
				c, err := net.Dial("udp", n.dns)
				if err != nil {
					report("dial: %v", err)
					return
				}
				defer c.Close()
				_, _ = c.Write(raw)
				_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
				buf := make([]byte, 65535)
				k, err := c.Read(buf)
				if err != nil {
					report("%s: no answer", name)
					return
				}
				var m dns.Msg
				if err := m.Unpack(buf[:k]); err != nil {
					report("%s: answer does not parse: %v", name, err)
					return
				}
				if m.Id != q.Id || len(m.Question) != 1 || !strings.EqualFold(m.Question[0].Name, name) {
					report("%s: answer to another query: %v", name, &m)
				}
				if strings.Contains(m.String(), badA) {
					report("%s: a wrong answer reached the client: %v", name, &m)
				}
				if k > 512 {
					report("%s: %d-byte answer to a client without EDNS", name, k)
				}
				if mode == "big" && !m.Truncated && k > 512 {
					report("%s: oversized answer not truncated", name)
				}
				// Exactly one answer: a late one must not follow.
				_ = c.SetReadDeadline(time.Now().Add(time.Second))
				if k2, err := c.Read(buf); err == nil {
					report("%s: a second answer arrived: %x", name, buf[:min(k2, 32)])
				}
			}()
		}
	}
	wg.Wait()
	for _, p := range problems {
		t.Error(p)
	}
	for _, mode := range modes {
		t.Logf("bad backend saw %d %s queries", bad.count(mode), mode)
		if bad.count(mode) == 0 {
			t.Errorf("no %s query reached the bad backend: the test proved nothing for it", mode)
		}
	}
	// IDs sent to backends must be unpredictable: not sequential.
	bad.idMu.Lock()
	seq := 0
	for i := 1; i < len(bad.ids); i++ {
		if d := bad.ids[i] - bad.ids[i-1]; d >= 1 && d <= 4 {
			seq++
		}
	}
	ids := len(bad.ids)
	bad.idMu.Unlock()
	if seq > ids/10 {
		t.Errorf("%d of %d backend query IDs follow their predecessor closely: predictable", seq, ids)
	}
	n.waitFor("in-flight UDP queries back to 0", 5*time.Second, func() bool {
		return n.metric("anyfront_proxy_udp_inflight") == 0
	})
	n.backToBaseline(base, 5*time.Second)
}

// TestBackendAnswerCutInsideRecord: a backend answer that ends inside a
// record (without TC) is malformed; it must not be relayed to the client
// as if it were an answer.
func TestBackendAnswerCutInsideRecord(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	good := testlab.StartUnbound(t, testlab.UnboundOptions{})
	bad := startBadBackend(t)
	n := startNode(t, hostileBody(100, bad.conn.LocalAddr().String(), good.Addr.String()))
	n.waitFor("both backends up", 10*time.Second, func() bool {
		b := n.backends()
		return b["r1"].Health == "up" && b["r2"].Health == "up"
	})
	cutRelayed := 0
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("cut-%d.%s", i, testlab.RandZone)
		raw := udpAsk(t, n.dns, mustPack(t, mkQuery(name, dns.TypeA, uint16(i+1))), 2*time.Second)
		var m dns.Msg
		if raw == nil {
			t.Errorf("%s: no answer", name)
		} else if m.Unpack(raw) != nil {
			cutRelayed++
		} else if strings.Contains(m.String(), badA) {
			t.Errorf("%s: wrong answer relayed: %v", name, &m)
		}
	}
	t.Logf("bad backend saw %d cut queries", bad.count("cut"))
	if c := cutRelayed; c > 0 {
		t.Fatalf("regression (fixed bug): %d answers cut inside a record (no TC) were relayed to clients as they came: proxy/wire.go matchResponse checks only header and question; walk the remaining records with skipRecord (as findOPTAfter does) and treat a message that ends inside a record as a bad answer (retry elsewhere)", c)
	}
}

// TestTCPClientThatNeverReads: a client pipelines queries with large
// answers and never reads them. Its connection must still end within
// max_conn_time (plus one idle timeout for the last write), and its
// goroutines with it.
func TestTCPClientThatNeverReads(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	r1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	const idle, total = time.Second, 3 * time.Second
	n := startNode(t, fmt.Sprintf(`proxy:
  tcp: {idle_timeout: %s, max_conn_time: %s}
pools:
  default:
    backends: [{name: r1, address: %q}]
    healthcheck: {qname: "health.anyfront.test.", qtype: A, interval: 1s, rise: 1}
    cache: {size: 1000}
`, idle, total, r1.Addr))
	waitServing(n)
	warmTCP(n)
	base := n.baseline()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
	}}
	c, err := d.Dial("tcp", n.dns)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var buf []byte
	for i := 0; i < 4000; i++ {
		buf = append(buf, tcpFrame(mustPack(t, mkQuery(testlab.BigName, dns.TypeTXT, uint16(i))))...)
	}
	start := time.Now()
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		_, _ = c.Write(buf)
	}()
	bound := total + idle + 2*time.Second
	deadline := time.Now().Add(bound + 10*time.Second)
	for n.metric("anyfront_proxy_tcp_connections") != 0 {
		if time.Now().After(deadline) {
			m := n.metrics()
			t.Fatalf("regression (fixed bug): a client that never reads holds its connection past max_conn_time (%v): still open after %v, %v goroutines (baseline %v). proxy/tcp.go: tcpConn.write ignores write errors and every pipelined answer waits a fresh idle_timeout write deadline in turn (serialised on wmu), while handle's deferred wg.Wait keeps the connection; fix: close the connection on the first write error and cap write deadlines at the connection's end time", total, time.Since(start).Round(time.Second), m["go_goroutines"], base.goroutines)
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("connection closed by anyfront after %v", took.Round(time.Millisecond))
	if took > bound {
		t.Errorf("closed after %v, max_conn_time %v idle %v", took, total, idle)
	}
	c.Close()
	n.backToBaseline(base, 5*time.Second)
}
