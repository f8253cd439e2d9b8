package stream

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Writes that never wait. A stream answer is written by whichever goroutine
// has it, most often a shard's backend loop, which serves every connection
// and must not stall on one. Handing each answer to a writer goroutine of
// the connection's instead costs a goroutine wake-up per answer, which at
// DoT's loads is more than the write itself. So nbConn tries the socket
// without waiting; what the kernel does not take (its send buffer is full)
// joins a backlog that a goroutine of the connection's writes, started only
// then. Writes stay in order, and a client that leaves more than maxBacklog
// unread is cut off, as one that stops reading is by the write timeout. A
// connection that is not a socket (a test's pipe) has every write go
// through the backlog: its writes never wait either.

// maxBacklog bounds what a connection holds for a client that reads
// slower than it asks: past the kernel's send buffer, room for a burst of
// answers. One write is always taken whole into an empty backlog, so a
// single large answer never cuts a connection off.
const maxBacklog = 512 << 10

// errBacklog fails the writes to a client that left too much unread.
var errBacklog = errors.New("stream: client leaves too much unread")

// nbConn is a TCP connection whose writes never wait. Reads, deadlines
// and Close are the connection's own.
type nbConn struct {
	net.Conn
	rc syscall.RawConn // nil: not a socket, every write goes to the backlog
	// idle and end bound the backlog writer's waits as the connection's
	// reads are bounded: the idle timeout, and its lifetime's end.
	idle time.Duration
	end  time.Time

	mu      sync.Mutex
	idleW   sync.Cond // on mu: the backlog writer stopped
	backlog []byte
	spare   []byte
	held    int   // bytes of the backlog the writer has taken and is writing
	writing bool  // the backlog writer runs
	err     error // the first failure, returned by every later write
	// stalled counts connections cut off for their backlog.
	stalled *atomic.Uint64
}

// newNBConn wraps c so that its writes never wait.
func newNBConn(c net.Conn, idle time.Duration, end time.Time, stalled *atomic.Uint64) *nbConn {
	nb := &nbConn{Conn: c, idle: idle, end: end, stalled: stalled}
	nb.idleW.L = &nb.mu
	inner := c
	if pc, ok := c.(*ppConn); ok {
		inner = pc.Conn
	}
	if sc, ok := inner.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			nb.rc = rc
		}
	}
	return nb
}

// Write takes all of p or fails; it never waits for the client.
func (c *nbConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.writing {
		return c.queueLocked(p)
	}
	n, err := c.try(p)
	if err != nil {
		c.err = err
		return n, err
	}
	if n < len(p) {
		return c.queueLocked(p[n:])
	}
	return len(p), nil
}

// neverWaits is a TLS connection over an nbConn, so marked for the HTTP/2
// server, which then writes answers on the goroutine that has them.
type neverWaits struct{ *tls.Conn }

func (neverWaits) WritesNeverWait() bool { return true }

// try writes what the socket takes now.
func (c *nbConn) try(p []byte) (int, error) {
	if c.rc == nil {
		return 0, nil
	}
	var n int
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Write(int(fd), p)
			if werr != unix.EINTR {
				return true // done either way: never wait for room
			}
		}
	})
	switch {
	case err != nil:
		return 0, err // closed
	case werr == unix.EAGAIN:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// queueLocked adds the rest of a write to the backlog, starting its writer.
func (c *nbConn) queueLocked(p []byte) (int, error) {
	if held := len(c.backlog) + c.held; held > 0 && held+len(p) > maxBacklog {
		c.err = errBacklog
		c.Conn.Close() // the reader fails too, and the connection ends
		c.stalled.Add(1)
		return 0, c.err
	}
	c.backlog = append(c.backlog, p...)
	if !c.writing {
		c.writing = true
		go c.drain()
	}
	return len(p), nil
}

// drain writes the backlog, waiting for the client, until it is empty.
func (c *nbConn) drain() {
	c.mu.Lock()
	for len(c.backlog) > 0 && c.err == nil {
		buf := c.backlog
		c.backlog = c.spare[:0]
		c.held = len(buf)
		c.mu.Unlock()
		dl := time.Now().Add(c.idle)
		if dl.After(c.end) {
			dl = c.end
		}
		_ = c.Conn.SetWriteDeadline(dl)
		_, err := c.Conn.Write(buf)
		c.mu.Lock()
		c.held = 0
		if err != nil {
			c.err = err
			c.Conn.Close()
		}
		if cap(buf) <= maxSpare {
			c.spare = buf[:0]
		} else {
			c.spare = nil
		}
	}
	if c.err != nil {
		c.backlog = nil
	}
	c.writing = false
	c.idleW.Broadcast()
	c.mu.Unlock()
}

// drained waits until the backlog is written, or the connection failed:
// before a graceful close, so a client reading slowly still gets its last
// answers, within the write deadline the backlog writer keeps.
func (c *nbConn) drained() {
	c.mu.Lock()
	for c.writing && c.err == nil {
		c.idleW.Wait()
	}
	c.mu.Unlock()
}
