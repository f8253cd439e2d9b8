package stream

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/miekg/dns"
)

// waitUntil polls cond until it holds, failing after 5s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// closedByServer says whether the server closes c within 5s, reading and
// discarding what it still sends.
func closedByServer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return !errors.Is(err, os.ErrDeadlineExceeded)
}

func TestTCPBounds(t *testing.T) {
	k := newKit(t)
	start := func(t *testing.T, cfg TCPConfig) (*TCP, *atomic.Uint64) {
		refused := new(atomic.Uint64)
		d := k.deps()
		d.ConnsRefused = refused
		f := NewTCP(k.tcpListener(), cfg, d)
		done := serve(context.Background(), f)
		t.Cleanup(func() { f.Close(); wait(t, done) })
		return f, refused
	}
	dial := func(t *testing.T, f Front) net.Conn {
		c, err := net.Dial("tcp", f.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	q := dnstest.Pack(t, dnstest.Query("a.example.", dns.TypeA))
	localhost := netip.MustParseAddr("127.0.0.1")

	t.Run("connections per client are bounded, and a closed one makes room", func(t *testing.T) {
		lim := testLimits
		lim.MaxConnsPerClient = 2
		conns := NewConnLimit(lim)
		f, refused := start(t, TCPConfig{Limits: lim, Conns: conns})
		a, _ := dial(t, f), dial(t, f)
		waitUntil(t, "two connections admitted", func() bool { return conns.ConnsFrom(localhost) == 2 })
		if !closedByServer(dial(t, f)) {
			t.Fatal("a third connection from one client was kept")
		}
		if refused.Load() != 1 {
			t.Errorf("%d refusals counted, want 1", refused.Load())
		}
		a.Close()
		waitUntil(t, "the closed connection released", func() bool { return conns.ConnsFrom(localhost) == 1 })
		if _, err := exchange(dial(t, f), q); err != nil {
			t.Fatalf("after one closed: %v", err)
		}
	})
	t.Run("the bound is shared by the front ends given it", func(t *testing.T) {
		lim := testLimits
		lim.MaxConns = 1
		conns := NewConnLimit(lim)
		f1, _ := start(t, TCPConfig{Limits: lim, Conns: conns})
		f2, refused := start(t, TCPConfig{Limits: lim, Conns: conns})
		dial(t, f1)
		waitUntil(t, "one connection admitted", func() bool { return conns.Conns() == 1 })
		if !closedByServer(dial(t, f2)) || refused.Load() != 1 {
			t.Fatal("the other front end took a connection over the shared bound")
		}
	})
	t.Run("a connection ends after max_queries_per_conn queries", func(t *testing.T) {
		lim := testLimits
		lim.MaxQueriesPerConn = 3
		f, _ := start(t, TCPConfig{Limits: lim})
		c := dial(t, f)
		for i := 0; i < 3; i++ {
			if _, err := exchange(c, q); err != nil {
				t.Fatalf("query %d: %v", i+1, err)
			}
		}
		if _, err := exchange(c, q); err == nil {
			t.Fatal("a fourth query was answered")
		}
	})
	t.Run("an idle connection is closed", func(t *testing.T) {
		lim := testLimits
		lim.IdleTimeout = 100 * time.Millisecond
		f, _ := start(t, TCPConfig{Limits: lim})
		c := dial(t, f)
		if _, err := exchange(c, q); err != nil {
			t.Fatal(err)
		}
		if !closedByServer(c) {
			t.Fatal("an idle connection was kept open")
		}
	})
	t.Run("a zero-length frame ends the connection and is counted", func(t *testing.T) {
		short := new(atomic.Uint64)
		d := k.deps()
		d.Short = short
		f := NewTCP(k.tcpListener(), TCPConfig{Limits: testLimits}, d)
		done := serve(context.Background(), f)
		t.Cleanup(func() { f.Close(); wait(t, done) })
		c := dial(t, f)
		c.Write([]byte{0, 0})
		if !closedByServer(c) || short.Load() != 1 {
			t.Fatalf("closed, %d counted; want 1", short.Load())
		}
	})
}

func TestTCPPipeliningBound(t *testing.T) {
	k := newKit(t)
	k.h.block = make(chan struct{})
	lim := testLimits
	lim.MaxInflightPerConn = 2
	queries := new(atomic.Uint64)
	d := k.deps()
	d.Queries = queries
	f := NewTCP(k.tcpListener(), TCPConfig{Limits: lim}, d)
	done := serve(context.Background(), f)
	t.Cleanup(func() { f.Close(); wait(t, done) })
	c, err := net.Dial("tcp", f.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	q := dnstest.Pack(t, dnstest.Query("a.example.", dns.TypeA))
	frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	for i := 0; i < 3; i++ {
		c.Write(frame)
	}
	waitUntil(t, "two queries handed on", func() bool { return k.h.calls.Load() == 2 })
	// The third is read only once one of the two is answered: nothing to
	// wait for but a window in which it must not happen.
	time.Sleep(100 * time.Millisecond)
	if n := k.h.calls.Load(); n != 2 {
		t.Fatalf("%d queries taken, past max_inflight_per_conn 2", n)
	}
	if f.Inflight() != 2 {
		t.Errorf("%d in flight, want 2", f.Inflight())
	}
	close(k.h.block)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for i := 0; i < 3; i++ {
		var lb [2]byte
		if _, err := io.ReadFull(c, lb[:]); err != nil {
			t.Fatalf("answer %d: %v", i+1, err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(binary.BigEndian.Uint16(lb[:]))); err != nil {
			t.Fatal(err)
		}
	}
	if queries.Load() != 3 {
		t.Errorf("%d queries counted, want 3", queries.Load())
	}
}
