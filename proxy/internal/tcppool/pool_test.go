package tcppool

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// backend is a TCP server that answers each framed query after delay(q)
// with the query itself, QR set: enough to see pipelining and ID matching
// without a resolver.
func backend(t *testing.T, delay func(q []byte) time.Duration) (netip.AddrPort, func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	conns := 0
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				var wmu sync.Mutex
				for {
					var l [2]byte
					if _, err := io.ReadFull(c, l[:]); err != nil {
						return
					}
					q := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := io.ReadFull(c, q); err != nil {
						return
					}
					// Answerers are not waited for: a backend that never
					// answers sleeps past the test.
					go func() {
						time.Sleep(delay(q))
						q[2] |= 0x80
						wmu.Lock()
						c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
						wmu.Unlock()
					}()
				}
			})
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String()), func() int { mu.Lock(); defer mu.Unlock(); return conns }
}

func query(tag byte) []byte {
	q := make([]byte, 17)
	q[5] = 1 // QDCOUNT
	q[12] = tag
	return q
}

// TestPipelinedAnswersFindTheirQueries: a slow answer sent first and a fast
// one sent after it on the same connection each reach their own waiter.
func TestPipelinedAnswersFindTheirQueries(t *testing.T) {
	addr, conns := backend(t, func(q []byte) time.Duration {
		if q[12] == 's' {
			return 200 * time.Millisecond
		}
		return 0
	})
	var wg sync.WaitGroup
	p := NewPool("b", addr, false, 1, &wg)
	defer func() { p.Close(); wg.Wait() }()
	slow, err := p.Start(query('s'), time.Now().Add(2*time.Second), netip.AddrPort{}, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := p.Exchange(query('f'), 2*time.Second, netip.AddrPort{}, netip.AddrPort{})
	if err != nil || resp[12] != 'f' {
		t.Fatalf("fast exchange: %v %q", err, resp)
	}
	select {
	case r := <-slow.C():
		if r == nil || r[12] != 's' {
			t.Fatalf("slow answer %q", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the slow answer never came")
	}
	if n := conns(); n != 1 {
		t.Errorf("%d connections for a pool of 1", n)
	}
}

// TestLostConnectionFailsItsWaiters: when the backend goes away, a waiter
// hears nil at once rather than at its timeout.
func TestLostConnectionFailsItsWaiters(t *testing.T) {
	addr, _ := backend(t, func([]byte) time.Duration { return time.Hour })
	var wg sync.WaitGroup
	p := NewPool("b", addr, false, 1, &wg)
	w, err := p.Start(query('x'), time.Now().Add(time.Hour), netip.AddrPort{}, netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Close()
	select {
	case r := <-w.C():
		if r != nil {
			t.Fatalf("got %q from a closed pool", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not failed when the connection closed")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("failed after %v", d)
	}
	wg.Wait()
	if _, _, err := p.Exchange(query('y'), time.Second, netip.AddrPort{}, netip.AddrPort{}); err == nil {
		t.Error("a closed pool still exchanged")
	}
}

func TestTimeout(t *testing.T) {
	addr, _ := backend(t, func([]byte) time.Duration { return 2 * time.Second })
	var wg sync.WaitGroup
	p := NewPool("b", addr, false, 1, &wg)
	defer func() { p.Close(); wg.Wait() }()
	if _, _, err := p.Exchange(query('t'), 50*time.Millisecond, netip.AddrPort{}, netip.AddrPort{}); err != ErrTimeout {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
}
