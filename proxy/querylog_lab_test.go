package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/querylog"
	"github.com/anyfront/anyfront/state"
)

// tapMsg is one dnstap message read back, with its DNS message unpacked.
type tapMsg struct {
	typ    dnstap.Message_Type
	proto  dnstap.SocketProtocol
	client netip.AddrPort
	server netip.AddrPort
	dns    *dns.Msg
}

func decodeTap(t testing.TB, frame []byte) tapMsg {
	t.Helper()
	var d dnstap.Dnstap
	if err := proto.Unmarshal(frame, &d); err != nil {
		t.Fatalf("a frame is not dnstap: %v", err)
	}
	m := d.GetMessage()
	if d.GetType() != dnstap.Dnstap_MESSAGE || m == nil || string(d.GetVersion()) != "anyfront" {
		t.Fatalf("unexpected dnstap frame: %v", &d)
	}
	wire := m.GetQueryMessage()
	if m.GetType() == dnstap.Message_CLIENT_RESPONSE {
		wire = m.GetResponseMessage()
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(wire); err != nil {
		t.Fatalf("%s carries a bad DNS message: %v", m.GetType(), err)
	}
	addr := func(b []byte, port uint32) netip.AddrPort {
		a, _ := netip.AddrFromSlice(b)
		return netip.AddrPortFrom(a, uint16(port))
	}
	return tapMsg{typ: m.GetType(), proto: m.GetSocketProtocol(), dns: msg,
		client: addr(m.GetQueryAddress(), m.GetQueryPort()), server: addr(m.GetResponseAddress(), m.GetResponsePort())}
}

// find returns the message of type typ for name from client, if any.
func find(msgs []tapMsg, typ dnstap.Message_Type, name string, client netip.AddrPort) (tapMsg, bool) {
	for _, m := range msgs {
		if m.typ == typ && m.client == client && len(m.dns.Question) == 1 && m.dns.Question[0].Name == name {
			return m, true
		}
	}
	return tapMsg{}, false
}

// askFrom sends one query over network and returns the client's address
// as the proxy saw it.
func askFrom(t *testing.T, network, server, name string, qtype uint16) netip.AddrPort {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 5 * time.Second}
	conn, err := c.Dial(server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r, _, err := c.ExchangeWithConn(dnstest.Query(name, qtype), conn)
	if err != nil {
		t.Fatalf("%s %s: %v", network, name, err)
	}
	if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
		t.Fatalf("%s %s: %s", network, name, dns.RcodeToString[r.Rcode])
	}
	return netip.MustParseAddrPort(conn.LocalAddr().String())
}

func TestLabQueryLogToFile(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	path := filepath.Join(t.TempDir(), "queries.dnstap")
	l := startLab(t, 1, "", fmt.Sprintf(`query_log: {dnstap: {file: %q}, identity: lab}
rules:
  - {match: {qname: [nx.example.]}, action: {nxdomain: true}}
`, path))
	udp := askFrom(t, "udp", l.addr, "www.demo.test.", dns.TypeA)
	tcp := askFrom(t, "tcp", l.addr, "demo.test.", dns.TypeAAAA)
	ruled := askFrom(t, "udp", l.addr, "nx.example.", dns.TypeMX)
	// The lab's readiness queries are in the file too: wait for the last
	// of ours.
	var msgs []tapMsg
	waitDesc(t, "the last response in the file", 5*time.Second, func() bool {
		msgs = readTapFile(t, path)
		_, ok := find(msgs, dnstap.Message_CLIENT_RESPONSE, "nx.example.", ruled)
		return ok
	})
	for _, c := range []struct {
		what   string
		name   string
		qtype  uint16
		client netip.AddrPort
		proto  dnstap.SocketProtocol
		rcode  int
	}{
		{"UDP query forwarded", "www.demo.test.", dns.TypeA, udp, dnstap.SocketProtocol_UDP, dns.RcodeSuccess},
		{"TCP query forwarded", "demo.test.", dns.TypeAAAA, tcp, dnstap.SocketProtocol_TCP, dns.RcodeSuccess},
		{"UDP query a rule answered", "nx.example.", dns.TypeMX, ruled, dnstap.SocketProtocol_UDP, dns.RcodeNameError},
	} {
		q, ok := find(msgs, dnstap.Message_CLIENT_QUERY, c.name, c.client)
		if !ok {
			t.Errorf("%s: no CLIENT_QUERY for %s from %s among %d messages", c.what, c.name, c.client, len(msgs))
			continue
		}
		if q.dns.Question[0].Qtype != c.qtype || q.proto != c.proto || q.dns.Response {
			t.Errorf("%s: query logged as %v over %s", c.what, q.dns.Question[0], q.proto)
		}
		resp, ok := find(msgs, dnstap.Message_CLIENT_RESPONSE, c.name, c.client)
		if !ok {
			t.Errorf("%s: no CLIENT_RESPONSE", c.what)
			continue
		}
		if !resp.dns.Response || resp.dns.Id != q.dns.Id || resp.dns.Rcode != c.rcode || resp.proto != c.proto {
			t.Errorf("%s: response logged with id %d (query %d), rcode %s, over %s", c.what, resp.dns.Id, q.dns.Id,
				dns.RcodeToString[resp.dns.Rcode], resp.proto)
		}
		if c.proto == dnstap.SocketProtocol_UDP && resp.server.String() != l.addr {
			t.Errorf("%s: response address %s, want the listener %s", c.what, resp.server, l.addr)
		}
	}
	if s := l.p.QueryLogStats(); s.QueueFull+s.TooBig+s.NoReader != 0 || !s.Connected {
		t.Errorf("query log stats %+v: nothing should be dropped writing to a file", s)
	}
}

// readTapFile reads the frames of a query log file. The writer flushes
// after every batch, so the file holds every frame written so far (a
// stream not yet stopped reads to EOF).
func readTapFile(t *testing.T, path string) []tapMsg {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := dnstap.NewReader(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []tapMsg
	buf := make([]byte, 1<<16)
	for {
		n, err := r.ReadFrame(buf)
		if err != nil {
			return msgs
		}
		msgs = append(msgs, decodeTap(t, buf[:n]))
	}
}

// TestLabQueryLogEncryptedTransports logs queries that came over DoT, DoH
// and DoQ, each with its dnstap socket protocol.
func TestLabQueryLogEncryptedTransports(t *testing.T) {
	path := filepath.Join(t.TempDir(), "queries.dnstap")
	tl := startTransportLab(t, addrPicker{}, nil, fmt.Sprintf("query_log: {dnstap: {file: %q}}\n", path))
	if r, err := tl.dotExchange(dnstest.Query("dot.rand.demo.test.", dns.TypeA)); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("DoT: %v %v", r, err)
	}
	if r := tl.dohExchange(t, dnstest.Query("doh.rand.demo.test.", dns.TypeA)); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("DoH: %v", r)
	}
	doq := dnstest.Query("doq.rand.demo.test.", dns.TypeA)
	doq.Id = 0 // RFC 9250 section 4.2.1
	if r, err := tl.doqExchange(t, doq); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Fatalf("DoQ: %v %v", r, err)
	}
	tl.closeClients()
	// The lab's readiness queries are in the file too: wait for the last
	// of ours.
	var msgs []tapMsg
	waitDesc(t, "the dnswire.DoQ response in the file", 5*time.Second, func() bool {
		msgs = readTapFile(t, path)
		for _, m := range msgs {
			if m.typ == dnstap.Message_CLIENT_RESPONSE && len(m.dns.Question) == 1 && m.dns.Question[0].Name == "doq.rand.demo.test." {
				return true
			}
		}
		return false
	})
	for name, want := range map[string]dnstap.SocketProtocol{
		"dot.rand.demo.test.": dnstap.SocketProtocol_DOT, "doh.rand.demo.test.": dnstap.SocketProtocol_DOH, "doq.rand.demo.test.": querylog.SocketProtocolDoQ,
	} {
		for _, typ := range []dnstap.Message_Type{dnstap.Message_CLIENT_QUERY, dnstap.Message_CLIENT_RESPONSE} {
			found := false
			for _, m := range msgs {
				if m.typ == typ && len(m.dns.Question) == 1 && m.dns.Question[0].Name == name {
					found = true
					if m.proto != want || !m.client.Addr().IsLoopback() || m.client.Port() == 0 {
						t.Errorf("%s %s: protocol %s, client %s; want %s from a loopback port", name, typ, m.proto, m.client, want)
					}
				}
			}
			if !found {
				t.Errorf("no %s for %s among %d messages", typ, name, len(msgs))
			}
		}
	}
}

// tapReader is a dnstap reader on a unix socket, as a collector runs one:
// it accepts the proxy's connection and decodes what arrives.
type tapReader struct {
	ln   net.Listener
	mu   sync.Mutex
	msgs []tapMsg
	conn net.Conn
	done chan struct{}
}

func startTapReader(t *testing.T, path string) *tapReader {
	t.Helper()
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tr := &tapReader{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tr.mu.Lock()
			tr.conn = c
			tr.mu.Unlock()
			tr.read(t, c)
		}
	}()
	t.Cleanup(tr.stop)
	return tr
}

func (tr *tapReader) read(t *testing.T, c net.Conn) {
	r, err := dnstap.NewReader(c, &dnstap.ReaderOptions{Bidirectional: true})
	if err != nil {
		c.Close()
		return
	}
	buf := make([]byte, 1<<16)
	for {
		n, err := r.ReadFrame(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				t.Logf("tap reader: %v", err)
			}
			c.Close()
			return
		}
		m := decodeTap(t, buf[:n])
		tr.mu.Lock()
		tr.msgs = append(tr.msgs, m)
		tr.mu.Unlock()
	}
}

// stop makes the reader go away, as a collector that exits does.
func (tr *tapReader) stop() {
	tr.ln.Close()
	tr.mu.Lock()
	if tr.conn != nil {
		tr.conn.Close()
	}
	tr.mu.Unlock()
	<-tr.done
}

func (tr *tapReader) has(typ dnstap.Message_Type, name string, client netip.AddrPort) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	_, ok := find(tr.msgs, typ, name, client)
	return ok
}

func TestLabQueryLogToSocket(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	// A short path: unix socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("", "aftap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "tap.sock")
	l := startLab(t, 1, "", fmt.Sprintf("query_log: {dnstap: {socket: %q}}", path))

	t.Run("no reader yet: queries are answered and messages counted as dropped", func(t *testing.T) {
		askFrom(t, "udp", l.addr, "before.demo.test.", dns.TypeA)
		waitDesc(t, "drops counted", 5*time.Second, func() bool { return l.p.QueryLogStats().NoReader >= 2 })
		if l.p.QueryLogStats().Connected {
			t.Error("connected with no reader")
		}
	})

	tr := startTapReader(t, path)
	t.Run("a reader that appears gets the queries and responses", func(t *testing.T) {
		waitDesc(t, "the proxy to connect", 5*time.Second, func() bool { return l.p.QueryLogStats().Connected })
		client := askFrom(t, "udp", l.addr, "first.demo.test.", dns.TypeA)
		tcpClient := askFrom(t, "tcp", l.addr, "first-tcp.demo.test.", dns.TypeTXT)
		waitDesc(t, "the frames at the reader", 5*time.Second, func() bool {
			return tr.has(dnstap.Message_CLIENT_QUERY, "first.demo.test.", client) &&
				tr.has(dnstap.Message_CLIENT_RESPONSE, "first.demo.test.", client) &&
				tr.has(dnstap.Message_CLIENT_QUERY, "first-tcp.demo.test.", tcpClient) &&
				tr.has(dnstap.Message_CLIENT_RESPONSE, "first-tcp.demo.test.", tcpClient)
		})
	})

	tr.stop()
	t.Run("the reader gone: the proxy keeps answering and counts drops", func(t *testing.T) {
		before := l.p.QueryLogStats().NoReader
		for i := range 20 {
			askFrom(t, "udp", l.addr, fmt.Sprintf("gone%d.demo.test.", i), dns.TypeA)
		}
		waitDesc(t, "drops counted", 5*time.Second, func() bool { return l.p.QueryLogStats().NoReader > before })
	})

	tr = startTapReader(t, path)
	t.Run("a reader that comes back gets new queries", func(t *testing.T) {
		waitDesc(t, "the proxy to reconnect", 5*time.Second, func() bool { return l.p.QueryLogStats().Connected })
		client := askFrom(t, "udp", l.addr, "again.demo.test.", dns.TypeA)
		waitDesc(t, "the frames at the new reader", 5*time.Second, func() bool {
			return tr.has(dnstap.Message_CLIENT_QUERY, "again.demo.test.", client) &&
				tr.has(dnstap.Message_CLIENT_RESPONSE, "again.demo.test.", client)
		})
	})
}

// TestLabQueryLogAllocs asserts that logging every query and its answer
// adds no allocation per query to the UDP path. The socket has no reader,
// so the writer drops what it takes (framing allocates, on the writer's
// goroutine): what is measured is the query path's copy into the queue.
func TestLabQueryLogAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	dir, err := os.MkdirTemp("", "aftap")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l := startLab(t, 1, "", fmt.Sprintf("query_log: {dnstap: {socket: %q}, responses: true}", filepath.Join(dir, "none.sock")))
	before := l.p.QueryLogStats().NoReader
	if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
		t.Errorf("%.2f allocations per query with every query and answer logged, want 0", avg)
	}
	// The queries really went through the log: 2,200 queries and answers.
	waitDesc(t, "the messages to reach the writer", 5*time.Second, func() bool {
		s := l.p.QueryLogStats()
		return s.NoReader+s.QueueFull-before >= 4400
	})
}

// waitDesc polls cond until it holds, failing t after within with what.
func waitDesc(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestQueryLogFileThatCannotBeCreatedFailsRun(t *testing.T) {
	cfg, err := config.Parse("t.yaml", []byte(`listen: [{address: "127.0.0.1:0"}]
query_log: {dnstap: {file: /nonexistent-dir/q.dnstap}}
pools: {default: {backends: [{name: r1, address: "127.0.0.1:5301"}]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "query_log: open /nonexistent-dir/q.dnstap") {
		t.Errorf("Run: %v, want the query log file's error", err)
	}
}
