package stream

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// A TCP or DoT connection: the connection's goroutine reads queries
// (buffered: a pipelined burst is one read); answers are framed into one
// buffer and written by the goroutine that brought the first of them, which
// writes what others queue meanwhile with it. The connection's writes never
// wait (nbConn), so that goroutine, often a shard's backend loop, is not
// held by a slow client. A DoT query
// goes to Handler.AnswerAsync and needs no goroutine. A plain TCP query
// gets one while it waits for Handler.Answer: TCP clients came for answers
// too large for UDP, which the core fetches over TCP and waits for.

// asyncConn is one connection's answer side. It is the Waiter of every
// query the connection reads: the answers need no per-query state, as DNS
// over TCP answers carry their own IDs and may go in any order.
type asyncConn struct {
	f   *TCP
	c   net.Conn
	end time.Time // the connection's lifetime bound (max_conn_time)
	// sem bounds queries in flight; done counts them and the flusher, so
	// the connection closes only once all are written.
	sem  chan struct{}
	done sync.WaitGroup

	mu       sync.Mutex
	out      []byte // framed answers not yet written
	spare    []byte // the flusher's last buffer, for reuse
	flushing bool
	// broken is set on the first failed write: a client that stops
	// reading gets its connection closed, not a fresh deadline per answer.
	broken bool
}

// maxSpare keeps a burst of large answers from pinning its buffer.
const maxSpare = 64 << 10

// Answered writes one answer (nil: none), with any others queued, and
// frees its in-flight place.
func (a *asyncConn) Answered(resp []byte) {
	if f := a.Queue(resp); f != nil {
		f.Flush()
	}
}

// Queue frames one answer (nil: none) for the next write and frees its
// in-flight place; it returns a when it began a write that Flush must do.
func (a *asyncConn) Queue(resp []byte) Flusher {
	start := false
	if resp != nil {
		a.mu.Lock()
		if !a.broken {
			a.out = binary.BigEndian.AppendUint16(a.out, uint16(len(resp)))
			a.out = append(a.out, resp...)
			if !a.flushing {
				a.flushing = true
				a.done.Add(1) // the connection closes only once it is written
				start = true
			}
		}
		a.mu.Unlock()
	}
	<-a.sem
	a.f.inflight.Add(-1)
	a.done.Done()
	if start {
		return a
	}
	return nil
}

// Flush writes what is queued until nothing is, on the caller's goroutine:
// c's writes never wait.
func (a *asyncConn) Flush() {
	defer a.done.Done()
	a.mu.Lock()
	for len(a.out) > 0 && !a.broken {
		buf := a.out
		a.out = a.spare[:0]
		a.mu.Unlock()
		_, err := a.c.Write(buf)
		a.mu.Lock()
		if err != nil {
			a.broken = true
			a.c.Close() // the reader fails too, and the connection ends
		}
		if cap(buf) <= maxSpare {
			a.spare = buf[:0]
		} else {
			a.spare = nil
		}
	}
	a.out = a.out[:0]
	a.flushing = false
	a.mu.Unlock()
}

// handle serves one connection until the client goes, a bound ends it or
// Close stops its reads; the queries read are answered first.
func (f *TCP) handle(c net.Conn, client netip.AddrPort, end time.Time) {
	a := &asyncConn{f: f, c: c, end: end, sem: make(chan struct{}, f.lim.MaxInflightPerConn)}
	defer a.done.Wait()
	local := addrOf(c.LocalAddr())
	br := bufio.NewReaderSize(c, 4096)
	var lenBuf [2]byte
	var msg []byte
	for q := 0; q < f.lim.MaxQueriesPerConn; q++ {
		dl := time.Now().Add(f.lim.IdleTimeout)
		if dl.After(a.end) {
			dl = a.end
		}
		_ = c.SetReadDeadline(dl)
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if n == 0 {
			f.deps.Short.Add(1)
			return
		}
		if cap(msg) < n {
			msg = make([]byte, n, max(n, 512))
		}
		msg = msg[:n]
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		f.deps.Queries.Add(1)
		// Pipelining past the bound blocks here: no more reads until
		// one of this connection's queries is answered.
		a.sem <- struct{}{}
		a.done.Add(1)
		f.inflight.Add(1)
		if f.tls != nil {
			// msg is the core's only until AnswerAsync returns: reused.
			f.deps.Handler.AnswerAsync(msg, client, local, f.tr, a)
			continue
		}
		q := append([]byte(nil), msg...)
		go func() {
			// nil is a dropped malformed query: the connection stays,
			// as its other queries may be fine.
			a.Answered(f.deps.Handler.Answer(q, client, local, f.tr))
		}()
	}
}
