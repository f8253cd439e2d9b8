package h2

import (
	"strconv"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

type opKind uint8

const (
	opResp opKind = iota
	opSettings
	opSettingsAck
	opPing
	opWindow
	opReset
	opGoAway
)

// wop is one thing for the writer to write.
type wop struct {
	kind  opKind
	table bool // opSettingsAck: val is the peer's HEADER_TABLE_SIZE
	id    uint32
	val   uint32
	code  http2.ErrCode
	ping  [8]byte
	r     *Request
}

// A Flusher writes what was queued for it: see Request.Queue.
type Flusher interface{ Flush() }

// respond queues r's answer and returns the connection if the caller must
// Flush it (nil: dropped, or another caller's Flush is due and takes it).
func (c *conn) respond(r *Request, status int, maxAge uint32) Flusher {
	c.mu.Lock()
	if r.answered {
		c.mu.Unlock()
		return nil
	}
	r.answered, r.status, r.maxAge = true, status, maxAge
	if r.reset || c.closed {
		c.mu.Unlock()
		c.s.stats.Dropped.Add(1)
		putRequest(r)
		return nil
	}
	c.queue = append(c.queue, wop{kind: opResp, r: r})
	if c.flushDue {
		c.mu.Unlock()
		return nil
	}
	c.flushDue = true
	c.mu.Unlock()
	return c
}

// Flush writes what is queued: at once on this goroutine when the
// connection's writes never wait and no one else is writing, otherwise by
// waking the writer goroutine. It saves that goroutine's wake-up per answer.
func (c *conn) Flush() {
	c.mu.Lock()
	c.flushDue = false
	if !c.inline || c.writing || c.closed || len(c.queue) == 0 {
		c.mu.Unlock()
		c.kick()
		return
	}
	c.writing = true
	var err error
	for len(c.queue) > 0 && err == nil {
		batch := c.queue
		c.queue = c.spareQ[:0]
		c.mu.Unlock()
		for i := range batch {
			if err == nil {
				err = c.writeOp(&batch[i])
			}
			batch[i] = wop{}
		}
		c.mu.Lock()
		c.spareQ = batch[:0]
	}
	c.mu.Unlock()
	if err == nil && c.bw.Buffered() > 0 {
		err = c.bw.Flush()
	}
	c.mu.Lock()
	c.writing = false
	c.mu.Unlock()
	if err != nil {
		c.close()
	}
	// The writer may wait for the token, for frames queued meanwhile, or
	// for the last answer before a graceful close.
	c.kick()
}

// writeLoop writes queued frames, flushing when the queue runs dry, so
// answers ready together share a TLS record. It stops when told to
// (stopNow), after a graceful GOAWAY once no stream is left, or on a write
// error; then it closes the connection, which ends the reader. It writes
// only while it holds the write token, which Flush may hold instead.
func (c *conn) writeLoop() {
	defer close(c.wdone)
	defer c.close()
	var batch []wop
	for {
		c.mu.Lock()
		for len(c.queue) == 0 || c.writing {
			if !c.writing && (c.stopNow || c.closed || (c.going && c.active == 0)) {
				c.mu.Unlock()
				return
			}
			c.mu.Unlock()
			<-c.wake
			c.mu.Lock()
		}
		c.writing = true
		batch, c.queue = c.queue, batch[:0]
		c.mu.Unlock()
		for i := range batch {
			if err := c.writeOp(&batch[i]); err != nil {
				return
			}
			batch[i] = wop{}
		}
		c.mu.Lock()
		idle := len(c.queue) == 0
		c.mu.Unlock()
		if idle && c.bw.Buffered() > 0 {
			c.armWrite()
			if err := c.bw.Flush(); err != nil {
				return
			}
		}
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
	}
}

// armWrite keeps the write deadline between half and all of WriteTimeout
// ahead, re-arming only when half of it has passed.
func (c *conn) armWrite() {
	now := time.Now()
	if c.wdl.Sub(now) < c.cfg.WriteTimeout/2 {
		c.wdl = now.Add(c.cfg.WriteTimeout)
		_ = c.nc.SetWriteDeadline(c.wdl)
	}
}

func (c *conn) writeOp(op *wop) error {
	c.armWrite()
	f := c.wfr
	switch op.kind {
	case opResp:
		return c.writeResp(op.r)
	case opSettings:
		return f.WriteSettings(
			http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: c.cfg.MaxStreams},
			http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.cfg.MaxHeaderListSize},
			http2.Setting{ID: http2.SettingEnablePush, Val: 0},
		)
	case opSettingsAck:
		if op.table {
			c.enc.SetMaxDynamicTableSizeLimit(op.val)
		}
		return f.WriteSettingsAck()
	case opPing:
		return f.WritePing(true, op.ping)
	case opWindow:
		return f.WriteWindowUpdate(op.id, op.val)
	case opReset:
		return f.WriteRSTStream(op.id, op.code)
	case opGoAway:
		return f.WriteGoAway(op.id, op.code, nil)
	}
	return nil
}

// writeResp writes as much of an answer as the peer's windows allow; the
// rest waits in c.blocked for a WINDOW_UPDATE.
func (c *conn) writeResp(r *Request) error {
	body := r.out
	if r.head {
		body = nil
	}
	c.mu.Lock()
	r.blocked = false
	if r.reset {
		c.mu.Unlock()
		c.s.stats.Dropped.Add(1)
		putRequest(r)
		return nil
	}
	n := int64(len(body) - r.sent)
	n = min(n, c.sendWin, int64(r.sendWin))
	n = max(n, 0)
	c.sendWin -= n
	r.sendWin -= int32(n)
	maxFrame := c.peerMax
	c.mu.Unlock()

	if !r.hdrSent {
		r.hdrSent = true
		if err := c.writeHeaders(r, len(r.out), len(body) == 0); err != nil {
			return err
		}
	}
	for n > 0 {
		k := min(int(n), maxFrame)
		end := r.sent+k == len(body)
		if err := c.wfr.WriteData(r.id, end, body[r.sent:r.sent+k]); err != nil {
			return err
		}
		r.sent += k
		n -= int64(k)
	}
	if r.sent < len(body) {
		c.mu.Lock()
		r.blocked = true
		c.blocked = append(c.blocked, r)
		c.mu.Unlock()
		return nil
	}
	if r.early {
		// Answered before the client finished sending (RFC 9113 8.1).
		if err := c.wfr.WriteRSTStream(r.id, http2.ErrCodeNo); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.finishLocked(r)
	c.mu.Unlock()
	putRequest(r)
	return nil
}

// HPACK literal-without-indexing prefixes for static-table names (RFC 7541
// appendix A): content-length is 28, cache-control 24. Their values change
// per answer, so they stay out of the dynamic table and need no string.
var (
	hdrContentLength = []byte{0x0f, 28 - 15}
	hdrCacheControl  = []byte{0x0f, 24 - 15}
)

func (c *conn) writeHeaders(r *Request, length int, endStream bool) error {
	c.hbuf.Reset()
	c.enc.WriteField(hpack.HeaderField{Name: ":status", Value: statusString(r.status)})
	if length > 0 || r.status == 200 {
		c.enc.WriteField(hpack.HeaderField{Name: "content-type", Value: MediaType})
	}
	if r.allow {
		c.enc.WriteField(hpack.HeaderField{Name: "allow", Value: "GET, HEAD, POST"})
	}
	var scratch [24]byte
	c.hbuf.Write(hdrContentLength)
	v := strconv.AppendInt(scratch[1:1], int64(length), 10)
	scratch[0] = byte(len(v))
	c.hbuf.Write(scratch[:1+len(v)])
	if r.status == 200 {
		c.hbuf.Write(hdrCacheControl)
		v := strconv.AppendUint(append(scratch[1:1], "max-age="...), uint64(r.maxAge), 10)
		scratch[0] = byte(len(v))
		c.hbuf.Write(scratch[:1+len(v)])
	}
	c.s.stats.byStatus[statusSlot(r.status)].Add(1)
	return c.wfr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: r.id, BlockFragment: c.hbuf.Bytes(), EndStream: endStream, EndHeaders: true,
	})
}

// statusString avoids formatting the usual statuses.
func statusString(code int) string {
	switch code {
	case 200:
		return "200"
	case 400:
		return "400"
	case 403:
		return "403"
	case 404:
		return "404"
	case 405:
		return "405"
	case 413:
		return "413"
	case 415:
		return "415"
	case 431:
		return "431"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(code)
}
