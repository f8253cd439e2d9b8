package querylog

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
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

// runWriter runs w until the returned stop is called, which waits (with a
// deadline) for Run to return.
func runWriter(t *testing.T, w *Writer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

// waitFor polls cond until it holds, failing t after within with what.
func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWriter(t *testing.T) {
	client := netip.MustParseAddrPort("192.0.2.7:5353")
	server := netip.MustParseAddrPort("192.0.2.53:53")
	m := new(dns.Msg)
	m.SetQuestion("www.example.", dns.TypeA)
	wire, _ := m.Pack()

	t.Run("what was queued before the stop is written, then Run returns and closes the file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "q.dnstap")
		q := New(&config.QueryLog{File: path, Sample: 1, Queue: 16, Responses: true}, slog.New(slog.DiscardHandler))
		w, err := q.Open()
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			q.Query(dnswire.UDP, client, server, wire)
			q.Response(dnswire.TCP, client, server, wire)
		}
		stop := runWriter(t, w)
		stop() // at once: the queue must still be drained
		if s := q.Stats(); s.Frames != 6 || s.Connected || s.QueueFull+s.TooBig+s.NoReader != 0 {
			t.Errorf("after the stop: %+v, want 6 frames, nothing dropped, not connected", s)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		r, err := dnstap.NewReader(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		var got []tapMsg
		buf := make([]byte, 1<<16)
		for {
			n, err := r.ReadFrame(buf)
			if err != nil {
				break
			}
			got = append(got, decodeTap(t, buf[:n]))
		}
		if len(got) != 6 {
			t.Fatalf("the file holds %d frames, want 6 (the stream closed cleanly)", len(got))
		}
		if got[0].typ != dnstap.Message_CLIENT_QUERY || got[1].typ != dnstap.Message_CLIENT_RESPONSE ||
			got[1].proto != dnstap.SocketProtocol_TCP || got[0].client != client || got[0].server != server {
			t.Errorf("first frames: %+v, %+v", got[0], got[1])
		}
	})
	t.Run("a file that cannot be created fails Open", func(t *testing.T) {
		q := New(&config.QueryLog{File: "/nonexistent-dir/q.dnstap", Queue: 16}, slog.New(slog.DiscardHandler))
		if w, err := q.Open(); err == nil || w != nil || !strings.Contains(err.Error(), "query_log: open /nonexistent-dir/q.dnstap") {
			t.Errorf("Open: %v, %v", w, err)
		}
	})
	t.Run("a socket without a reader counts drops, and Run still stops", func(t *testing.T) {
		q := New(&config.QueryLog{Socket: filepath.Join(t.TempDir(), "none.sock"), Sample: 1, Queue: 16}, slog.New(slog.DiscardHandler))
		w, err := q.Open()
		if err != nil {
			t.Fatalf("a socket without a reader is not an error: %v", err)
		}
		stop := runWriter(t, w)
		q.Query(dnswire.UDP, client, server, wire)
		q.Query(dnswire.UDP, client, server, wire)
		waitFor(t, "two drops counted", 5*time.Second, func() bool { return q.Stats().NoReader == 2 })
		stop()
		if s := q.Stats(); !s.Enabled || s.Connected || s.Frames != 0 {
			t.Errorf("%+v", s)
		}
	})
	t.Run("off: no writer, no counters, no metrics", func(t *testing.T) {
		var q *Log
		w, err := q.Open()
		if w != nil || err != nil {
			t.Fatalf("Open on a nil log: %v, %v", w, err)
		}
		w.Run(context.Background()) // returns at once
		if s := q.Stats(); s != (Stats{}) || q.Responses() {
			t.Errorf("a nil log reports %+v", s)
		}
		if n := collected(q); n != 0 {
			t.Errorf("a nil log exported %d metrics", n)
		}
	})
	t.Run("on: five series", func(t *testing.T) {
		if n := collected(testQueryLog(1)); n != 5 {
			t.Errorf("exported %d metrics, want frames, 3 drop reasons and connected", n)
		}
	})
}

func collected(q *Log) int {
	ch := make(chan prometheus.Metric, 16)
	q.Collect(ch)
	close(ch)
	n := 0
	for range ch {
		n++
	}
	return n
}
