package h2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// connRecvWindow is the connection-level window we give the client
	// for request bodies: 16 concurrent maximal POSTs without waiting for
	// our WINDOW_UPDATE. Each stream keeps the protocol's 65535, which is
	// exactly the largest body we accept.
	connRecvWindow = 1 << 20
	// windowGiveBack batches our WINDOW_UPDATEs: the received bytes are
	// given back once this many have accumulated.
	windowGiveBack = 16 << 10
	// maxFrameRead is the SETTINGS_MAX_FRAME_SIZE we keep (the protocol's
	// minimum; DNS messages are small).
	maxFrameRead = 16 << 10
	// readBufSize and writeBufSize are per connection; a write buffer holds
	// many small answers, flushed together.
	readBufSize  = 8 << 10
	writeBufSize = 16 << 10
	// defaultWindow is the protocol's initial flow-control window.
	defaultWindow = 65535
)

// errClientPreface is a connection that did not start with HTTP/2's preface.
var errClientPreface = errors.New("h2: bad client preface")

// conn is one HTTP/2 connection: the reader (ServeConn's goroutine) owns
// the read side, the framer's decoder and the fields marked reader-only;
// whoever holds the write token (writing, under mu) owns the write side:
// the writer goroutine, or, on a connection whose writes never wait, the
// goroutine that brought answers (Flush); mu guards the rest.
type conn struct {
	s      *Server
	cfg    *Config
	nc     net.Conn
	remote net.Addr
	local  net.Addr

	// reader-only
	br      *bufio.Reader
	fr      *http2.Framer
	dec     *hpack.Decoder
	hb      headerBlock
	lastID  uint32 // highest client stream opened (mirrored in mu's lastOpen)
	recvWin int32  // connection window left for the client's DATA
	recvAck int32  // DATA received, not yet given back
	nreq    int

	// writer-only
	bw       *bufio.Writer
	wfr      *http2.Framer
	enc      *hpack.Encoder
	hbuf     bytes.Buffer
	wdl      time.Time // write deadline armed
	spareQ   []wop     // Flush's batch, swapped with queue
	wake     chan struct{}
	wdone    chan struct{}
	closeOne sync.Once

	mu      sync.Mutex
	queue   []wop
	writing bool // the write token: its holder owns the write side
	// inline: nc's writes never wait, so Flush writes on its caller's
	// goroutine; flushDue says a Queue handed out the duty to call it.
	inline   bool
	flushDue bool
	blocked  []*Request
	streams  map[uint32]*Request
	active   int    // streams counted against MaxStreams
	lastOpen uint32 // lastID, for a GOAWAY sent from another goroutine
	goAwayID uint32 // streams above it are ignored once goingAway
	going    bool   // GOAWAY sent or queued: close when active is 0
	stopNow  bool   // the writer writes what is queued and stops
	closed   bool   // nothing more is written
	sendWin  int64  // peer's connection window for our DATA
	peerWin  int32  // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerMax  int    // peer's SETTINGS_MAX_FRAME_SIZE
	// deadlines, see armLocked
	opening  int // header blocks or bodies arriving (and the preface)
	stallAt  time.Time
	idleAt   time.Time
	ageAt    time.Time
	armed    time.Time
	timedOut bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		s: s, cfg: &s.cfg, nc: nc, remote: nc.RemoteAddr(), local: nc.LocalAddr(),
		wake:    make(chan struct{}, 1),
		wdone:   make(chan struct{}),
		streams: make(map[uint32]*Request),
		sendWin: defaultWindow, peerWin: defaultWindow, peerMax: maxFrameRead,
		recvWin: connRecvWindow,
	}
	c.br = bufio.NewReaderSize(deadlineReader{c}, readBufSize)
	c.fr = http2.NewFramer(nil, c.br)
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(maxFrameRead)
	c.dec = hpack.NewDecoder(4096, c.hb.emit)
	c.dec.SetMaxStringLength(int(c.cfg.MaxHeaderListSize))
	c.hb.max = c.cfg.MaxHeaderListSize
	if nw, ok := nc.(interface{ WritesNeverWait() bool }); ok {
		c.inline = nw.WritesNeverWait()
	}
	c.bw = bufio.NewWriterSize(nc, writeBufSize)
	c.wfr = http2.NewFramer(c.bw, nil)
	c.enc = hpack.NewEncoder(&c.hbuf)
	return c
}

// deadlineReader retries reads that hit a read deadline which is not (or
// no longer) the connection's real one: deadlines move later without a
// call per request, and a timeout never splits a frame. TLS keeps a record
// that timed out half-read, so retrying is safe.
type deadlineReader struct{ c *conn }

func (d deadlineReader) Read(p []byte) (int, error) {
	for {
		n, err := d.c.nc.Read(p)
		if err == nil || !isTimeout(err) || !d.c.readTimedOut() {
			return n, err
		}
		if n > 0 {
			return n, nil
		}
	}
}

// isTimeout is apart from Read because errors.As moves its target to the
// heap: declared in Read, that was an allocation per read.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readTimedOut decides what a read deadline meant: the connection's age
// (GOAWAY, keep reading), a stall or idleness (close), or nothing yet
// (re-arm). It reports whether to read on.
func (c *conn) readTimedOut() bool {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ageAt.IsZero() && !now.Before(c.ageAt) {
		c.ageAt = time.Time{}
		c.goAwayLocked(http2.ErrCodeNo)
	}
	if (c.opening > 0 && !now.Before(c.stallAt)) || !now.Before(c.idleAt) {
		c.timedOut = true
		return false
	}
	c.armed = time.Time{}
	c.armLocked()
	return true
}

// armLocked moves the read deadline earlier when it must be: the earliest
// of idleness, a stalled request and the connection's age. Later deadlines
// only take effect when the armed one fires (readTimedOut).
func (c *conn) armLocked() {
	d := c.idleAt
	if c.opening > 0 && c.stallAt.Before(d) {
		d = c.stallAt
	}
	if !c.ageAt.IsZero() && c.ageAt.Before(d) {
		d = c.ageAt
	}
	if c.armed.IsZero() || d.Before(c.armed) {
		c.armed = d
		_ = c.nc.SetReadDeadline(d)
	}
}

// openingLocked counts a request starting (+1) or completing (-1): each
// completion gives the others a fresh ReadHeaderTimeout.
func (c *conn) openingLocked(delta int) {
	c.opening += delta
	if delta > 0 && c.opening > 1 {
		return
	}
	c.stallAt = time.Now().Add(c.cfg.ReadHeaderTimeout)
	c.armLocked()
}

// serve runs the reading side, then stops the writer and closes.
func (c *conn) serve() error {
	now := time.Now()
	c.mu.Lock()
	c.idleAt = now.Add(c.cfg.IdleTimeout)
	if c.cfg.MaxConnAge > 0 {
		c.ageAt = now.Add(c.cfg.MaxConnAge)
	}
	c.openingLocked(1) // the preface
	c.mu.Unlock()

	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil || string(pre[:]) != http2.ClientPreface {
		c.close()
		if c.timedOut {
			c.s.stats.Timeouts.Add(1)
			return nil
		}
		c.s.stats.ProtocolErrors.Add(1)
		return errClientPreface
	}
	c.mu.Lock()
	c.queue = append(c.queue,
		wop{kind: opSettings},
		wop{kind: opWindow, val: connRecvWindow - defaultWindow})
	c.mu.Unlock()
	go c.writeLoop()

	err := c.readLoop()
	if err == errFlood {
		// The writer may be stuck on a client that does not read: the
		// GOAWAY is best effort, the close is not.
		c.s.stats.Floods.Add(1)
		c.close()
	}

	c.mu.Lock()
	c.stopNow = true
	timedOut, graceful := c.timedOut, c.going && c.active == 0
	c.mu.Unlock()
	c.kick()
	<-c.wdone
	c.close()
	var ce http2.ConnectionError
	switch {
	case timedOut:
		c.s.stats.Timeouts.Add(1)
		return nil
	case errors.As(err, &ce):
		return fmt.Errorf("h2: %w", err)
	case graceful, errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return nil
	}
	return err
}

// close closes the connection once; later answers are dropped.
func (c *conn) close() {
	c.closeOne.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		_ = c.nc.Close()
	})
}

// readLoop reads frames until the connection ends; a connection error is
// queued as GOAWAY before it returns.
func (c *conn) readLoop() error {
	first := true
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			var se http2.StreamError
			if errors.As(err, &se) {
				c.s.stats.ProtocolErrors.Add(1)
				c.resetStream(se.StreamID, se.Code)
				continue
			}
			if errors.Is(err, http2.ErrFrameTooLarge) {
				err = http2.ConnectionError(http2.ErrCodeFrameSize)
			}
			return c.connError(err)
		}
		if first {
			sf, ok := f.(*http2.SettingsFrame)
			if !ok || sf.IsAck() {
				return c.connError(http2.ConnectionError(http2.ErrCodeProtocol))
			}
			first = false
			c.mu.Lock()
			c.openingLocked(-1)
			c.mu.Unlock()
		}
		if err := c.handle(f); err != nil {
			return c.connError(err)
		}
	}
}

// connError queues GOAWAY for a protocol error and returns err.
func (c *conn) connError(err error) error {
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.s.stats.ProtocolErrors.Add(1)
		c.mu.Lock()
		c.going = true
		c.queue = append(c.queue, wop{kind: opGoAway, id: c.lastOpen, code: http2.ErrCode(ce)})
		c.mu.Unlock()
	}
	return err
}

// goAway starts a graceful end: GOAWAY now, close once the answers in
// flight are written.
func (c *conn) goAway() {
	c.mu.Lock()
	c.goAwayLocked(http2.ErrCodeNo)
	c.mu.Unlock()
	c.kick()
}

func (c *conn) goAwayLocked(code http2.ErrCode) {
	if c.going || c.closed {
		return
	}
	c.s.stats.GoAways.Add(1)
	c.going = true
	c.goAwayID = c.lastOpen
	c.queue = append(c.queue, wop{kind: opGoAway, id: c.lastOpen, code: code})
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// kick wakes the writer.
func (c *conn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
