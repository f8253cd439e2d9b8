package stream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpPair is a loopback TCP connection with small kernel buffers, so that
// a client that does not read fills them in a few writes.
func tcpPair(t *testing.T) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	_ = server.SetWriteBuffer(4096)
	_ = client.SetReadBuffer(4096)
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// writeAll writes chunks through w on another goroutine and fails the test
// if the writes wait for the client (which is not reading).
func writeAll(t *testing.T, w io.Writer, chunks [][]byte) []error {
	t.Helper()
	errs := make([]error, len(chunks))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, c := range chunks {
			_, errs[i] = w.Write(c)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writes waited for a client that does not read")
	}
	return errs
}

func TestNBConnBacklogKeepsOrder(t *testing.T) {
	server, client := tcpPair(t)
	var stalled atomic.Uint64
	c := newNBConn(server, 5*time.Second, time.Now().Add(time.Minute), &stalled)
	if c.rc == nil {
		t.Fatal("a TCP connection's socket was not reached")
	}
	// 200 KiB in chunks of odd sizes: far past the kernel's buffers,
	// under the backlog bound.
	var want bytes.Buffer
	var chunks [][]byte
	for i := 0; want.Len() < 200<<10; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 700+i%613)
		chunks = append(chunks, b)
		want.Write(b)
	}
	for i, err := range writeAll(t, c, chunks) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	got := make([]byte, want.Len())
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("the client read the writes out of order or altered")
	}
	if n := stalled.Load(); n != 0 {
		t.Fatalf("a connection under the bound was counted as a slow reader (%d)", n)
	}
	// Written through, the backlog is empty again: the next write goes
	// straight to the socket.
	if _, err := c.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	tail := make([]byte, 4)
	if _, err := io.ReadFull(client, tail); err != nil || string(tail) != "tail" {
		t.Fatalf("after the backlog: %q, %v", tail, err)
	}
}

func TestNBConnCutsOffClientThatDoesNotRead(t *testing.T) {
	server, client := tcpPair(t)
	var stalled atomic.Uint64
	c := newNBConn(server, 5*time.Second, time.Now().Add(time.Minute), &stalled)
	chunk := bytes.Repeat([]byte{'x'}, 16<<10)
	chunks := make([][]byte, 4*maxBacklog/len(chunk))
	for i := range chunks {
		chunks[i] = chunk
	}
	errs := writeAll(t, c, chunks)
	first := -1
	for i, err := range errs {
		if err != nil {
			first = i
			break
		}
	}
	if first < 0 {
		t.Fatalf("%d KiB written to a client that reads nothing, no error", len(chunks)*len(chunk)>>10)
	}
	// What was taken before the cut: the backlog bound, what the kernel
	// holds (small buffers here) and one chunk; the writer's buffer in
	// flight counts against the bound too.
	if taken := first * len(chunk); taken > maxBacklog+256<<10 {
		t.Errorf("%d KiB taken before the cut, bound %d KiB", taken>>10, maxBacklog>>10)
	}
	if !errors.Is(errs[first], errBacklog) {
		t.Fatalf("first failed write: %v, want errBacklog", errs[first])
	}
	for i := first; i < len(errs); i++ {
		if errs[i] == nil {
			t.Fatalf("write %d succeeded after the connection was cut off", i)
		}
	}
	if n := stalled.Load(); n != 1 {
		t.Fatalf("slow readers counted %d, want 1", n)
	}
	// The client finds its connection closed once it reads what came.
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, client); err != nil && !isReset(err) {
		t.Fatalf("client read: %v", err)
	}
}

func isReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// A connection that is not a socket (a pipe, which takes nothing until the
// other end reads) has every write go through the backlog writer: the
// writes still return at once, and arrive whole and in order.
func TestNBConnOverAPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newNBConn(a, 5*time.Second, time.Now().Add(time.Minute), new(atomic.Uint64))
	var want []byte
	var chunks [][]byte
	for i := 0; i < 50; i++ {
		p := bytes.Repeat([]byte{byte(i)}, 100+i)
		chunks = append(chunks, p)
		want = append(want, p...)
	}
	for i, err := range writeAll(t, c, chunks) {
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	got := make([]byte, len(want))
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(b, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), equal %v", len(got), err, bytes.Equal(got, want))
	}
}

// TestNBConnDrainedWaitsForTheBacklog: a graceful close waits until a slow
// reader has taken the backlog, so the last answers are not dropped.
func TestNBConnDrainedWaitsForTheBacklog(t *testing.T) {
	server, client := tcpPair(t)
	c := newNBConn(server, 5*time.Second, time.Now().Add(time.Minute), new(atomic.Uint64))
	want := bytes.Repeat([]byte("answer"), 30000) // 180 KB: past the kernel's buffers
	if _, err := c.Write(want); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		c.drained()
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("drained returned with the backlog unread")
	case <-time.After(200 * time.Millisecond):
	}
	got := make([]byte, len(want))
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(client, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back: %v", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("drained still waits with the backlog written")
	}
	c.Close()
}
