package h2

import (
	"time"

	"golang.org/x/net/http2"
)

// handle acts on one frame read; a returned error is a connection error.
func (c *conn) handle(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		return c.onHeaders(f.StreamID, f.StreamEnded(), f.HeadersEnded(), f.HeaderBlockFragment())
	case *http2.ContinuationFrame:
		// The framer checked it continues the open block.
		return c.onFragment(f.HeadersEnded(), f.HeaderBlockFragment())
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f.StreamID, f.Increment)
	case *http2.PingFrame:
		if !f.IsAck() {
			c.mu.Lock()
			if c.floodedLocked() {
				c.mu.Unlock()
				return errFlood
			}
			c.queue = append(c.queue, wop{kind: opPing, ping: f.Data})
			c.mu.Unlock()
			c.kick()
		}
	case *http2.RSTStreamFrame:
		return c.onReset(f.StreamID)
	case *http2.GoAwayFrame:
		// The client opens no more streams: finish what is in flight.
		c.goAway()
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol) // clients never push
	}
	// PRIORITY and unknown frame types are ignored (RFC 9113 5.3.2, 5.5).
	return nil
}

func (c *conn) onHeaders(id uint32, endStream, endHeaders bool, frag []byte) error {
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.hb.start(id, endStream)
	if !endHeaders {
		c.mu.Lock()
		c.openingLocked(1)
		c.mu.Unlock()
	}
	return c.decode(endHeaders, frag)
}

func (c *conn) onFragment(endHeaders bool, frag []byte) error {
	if endHeaders {
		c.mu.Lock()
		c.openingLocked(-1)
		c.mu.Unlock()
	}
	return c.decode(endHeaders, frag)
}

func (c *conn) decode(end bool, frag []byte) error {
	if _, err := c.dec.Write(frag); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if !end {
		return nil
	}
	if err := c.dec.Close(); err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	return c.onRequest(&c.hb)
}

// onRequest starts a stream from its complete header block.
func (c *conn) onRequest(h *headerBlock) error {
	id := h.id
	if id <= c.lastID {
		// Trailers end a body; anything else on a known stream is an error.
		c.mu.Lock()
		r := c.streams[id]
		c.mu.Unlock()
		if r != nil && r.bodyOpen && h.endStream {
			return c.endBody(r)
		}
		if r != nil {
			c.resetStream(id, http2.ErrCodeStreamClosed)
			return nil
		}
		// A closed stream or one never opened below the highest: the
		// two are not told apart (RFC 9113 5.1.1).
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.lastID = id
	c.mu.Lock()
	c.lastOpen = id
	if c.going && id > c.goAwayID {
		// After GOAWAY: the client retries it elsewhere.
		c.mu.Unlock()
		return nil
	}
	if c.active >= int(c.cfg.MaxStreams) {
		if c.floodedLocked() {
			c.mu.Unlock()
			return errFlood
		}
		c.queue = append(c.queue, wop{kind: opReset, id: id, code: http2.ErrCodeRefusedStream})
		c.mu.Unlock()
		c.s.stats.Refused.Add(1)
		c.kick()
		return nil
	}
	if !h.complete() {
		c.queue = append(c.queue, wop{kind: opReset, id: id, code: http2.ErrCodeProtocol})
		c.mu.Unlock()
		c.s.stats.ProtocolErrors.Add(1)
		c.kick()
		return nil
	}
	r := getRequest(c, id)
	r.inflight = true
	r.sendWin = c.peerWin
	r.recvWin = defaultWindow
	c.streams[id] = r
	c.active++
	c.idleAt = time.Now().Add(c.cfg.IdleTimeout)
	c.mu.Unlock()

	c.s.stats.Requests.Add(1)
	c.nreq++
	if c.cfg.MaxRequests > 0 && c.nreq >= c.cfg.MaxRequests {
		c.goAway()
	}
	r.early = !h.endStream
	if h.tooLarge {
		r.Fail(431)
		return nil
	}
	r.Method = h.method
	r.Path, _ = splitPath(h.path)
	if r.Path != c.cfg.Path {
		r.Fail(404)
		return nil
	}
	switch h.method {
	case "GET", "HEAD":
		r.head = h.method == "HEAD"
		_, q := splitPath(h.path)
		if st := r.parseGET(q, c.cfg.MaxBody); st != 0 {
			r.Fail(st)
			return nil
		}
		c.s.h.ServeDNS(r)
	case "POST":
		switch {
		case !mediaTypeOK(h.ctype):
			r.Fail(415)
		case h.clen > int64(c.cfg.MaxBody):
			r.Fail(413)
		case h.endStream:
			r.Fail(400) // no body: no query
		default:
			r.early = false
			r.clen = h.clen
			r.bodyOpen = true
			c.mu.Lock()
			c.openingLocked(1)
			c.mu.Unlock()
		}
	default:
		r.allow = true
		r.Fail(405)
	}
	return nil
}

func (c *conn) onData(f *http2.DataFrame) error {
	id, n := f.StreamID, int32(f.Length)
	// Connection-level flow control counts every DATA frame, padding
	// included, whatever its stream's state.
	if n > c.recvWin {
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWin -= n
	c.recvAck += n
	c.mu.Lock()
	if c.recvAck >= windowGiveBack {
		c.queue = append(c.queue, wop{kind: opWindow, val: uint32(c.recvAck)})
		c.recvWin += c.recvAck
		c.recvAck = 0
		c.kick()
	}
	r := c.streams[id]
	c.mu.Unlock()
	if r == nil || !r.bodyOpen {
		if id > c.lastID {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		return nil // a stream we answered or reset: ignored
	}
	if n > r.recvWin {
		c.resetStream(id, http2.ErrCodeFlowControl)
		return nil
	}
	r.recvWin -= n
	r.recvAck += n
	d := f.Data()
	if len(r.buf)+len(d) > c.cfg.MaxBody {
		c.closeBody(r)
		r.early = !f.StreamEnded()
		r.Fail(413)
		return nil
	}
	r.buf = append(r.buf, d...)
	if f.StreamEnded() {
		return c.endBody(r)
	}
	if r.recvAck >= windowGiveBack {
		c.mu.Lock()
		c.queue = append(c.queue, wop{kind: opWindow, id: id, val: uint32(r.recvAck)})
		c.mu.Unlock()
		r.recvWin += r.recvAck
		r.recvAck = 0
		c.kick()
	}
	return nil
}

// closeBody marks a POST body as no longer arriving.
func (c *conn) closeBody(r *Request) {
	if !r.bodyOpen {
		return
	}
	r.bodyOpen = false
	c.mu.Lock()
	c.openingLocked(-1)
	c.mu.Unlock()
}

// endBody hands a complete POST to the handler.
func (c *conn) endBody(r *Request) error {
	c.closeBody(r)
	if len(r.buf) == 0 || (r.clen >= 0 && r.clen != int64(len(r.buf))) {
		r.Fail(400)
		return nil
	}
	r.Query = r.buf
	c.s.h.ServeDNS(r)
	return nil
}

func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	op := wop{kind: opSettingsAck}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.floodedLocked() {
		return errFlood
	}
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			// RFC 9113 6.9.2: the change applies to every open stream.
			delta := int64(s.Val) - int64(c.peerWin)
			for _, r := range c.streams {
				w := int64(r.sendWin) + delta
				if w > 1<<31-1 {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
				r.sendWin = int32(w)
			}
			c.peerWin = int32(s.Val)
		case http2.SettingMaxFrameSize:
			c.peerMax = int(s.Val)
		case http2.SettingHeaderTableSize:
			op.table, op.val = true, s.Val
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.queue = append(c.queue, op)
	c.unblockLocked()
	c.kick()
	return nil
}

func (c *conn) onWindowUpdate(id, inc uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		c.sendWin += int64(inc)
		if c.sendWin > 1<<31-1 {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if r := c.streams[id]; r != nil {
		w := int64(r.sendWin) + int64(inc)
		if w > 1<<31-1 {
			c.resetLocked(r, http2.ErrCodeFlowControl)
			return nil
		}
		r.sendWin = int32(w)
	} else if id > c.lastOpen {
		return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
	}
	c.unblockLocked()
	c.kick()
	return nil
}

// unblockLocked queues again the answers waiting for flow-control window.
func (c *conn) unblockLocked() {
	for _, r := range c.blocked {
		c.queue = append(c.queue, wop{kind: opResp, r: r})
	}
	clear(c.blocked)
	c.blocked = c.blocked[:0]
}

func (c *conn) onReset(id uint32) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.streams[id]
	if r == nil {
		if id > c.lastOpen {
			return http2.ConnectionError(http2.ErrCodeProtocol) // idle stream
		}
		return nil
	}
	c.s.stats.Resets.Add(1)
	c.dropLocked(r)
	return nil
}

// resetStream resets a stream for a stream error.
func (c *conn) resetStream(id uint32, code http2.ErrCode) {
	c.mu.Lock()
	if r := c.streams[id]; r != nil {
		c.resetLocked(r, code)
	} else {
		c.queue = append(c.queue, wop{kind: opReset, id: id, code: code})
	}
	c.mu.Unlock()
	c.kick()
}

func (c *conn) resetLocked(r *Request, code http2.ErrCode) {
	c.queue = append(c.queue, wop{kind: opReset, id: r.id, code: code})
	c.dropLocked(r)
	c.kick()
}

// dropLocked forgets a stream: its answer, now or later, is dropped.
func (c *conn) dropLocked(r *Request) {
	r.reset = true
	if r.bodyOpen {
		r.bodyOpen = false
		c.openingLocked(-1)
	}
	c.finishLocked(r)
	if r.blocked {
		c.unblockLocked() // the writer drops it
		c.kick()
	}
}

// finishLocked takes a stream out of the count against MaxStreams.
func (c *conn) finishLocked(r *Request) {
	if !r.inflight {
		return
	}
	r.inflight = false
	delete(c.streams, r.id)
	c.active--
	c.idleAt = time.Now().Add(c.cfg.IdleTimeout)
}

// maxQueued bounds the frames waiting for the writer. Answers are bounded
// by MaxStreams; what a client can make us queue at will (PING and
// SETTINGS acks, refused streams) is not, and a client that sends those
// without reading ours would grow the queue until the write timeout.
const maxQueued = 1024

// errFlood ends a connection whose client makes us queue more than
// maxQueued frames: ENHANCE_YOUR_CALM, and closed at once.
var errFlood = http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)

func (c *conn) floodedLocked() bool { return len(c.queue) >= maxQueued }
