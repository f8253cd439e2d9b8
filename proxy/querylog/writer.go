package querylog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"
	dnstap "github.com/dnstap/golang-dnstap"
	"google.golang.org/protobuf/proto"
)

const (
	// logDrainEvery is how often the writer looks at the queue: the query
	// path never wakes it (that would cost a channel operation per query),
	// so a full queue (4096 by default) holds 10 ms of 400k messages/s.
	logDrainEvery = 10 * time.Millisecond
	// dnstapRetry spaces attempts to reach a socket with no reader; the
	// messages meanwhile are counted as dropped, not held.
	dnstapRetry = time.Second
	// dnstapTimeout bounds the Frame Streams handshake and each write, so
	// a reader that stops reading costs drops, not a stuck writer.
	dnstapTimeout = 2 * time.Second
)

// SocketProtocolDoQ is DOQ in dnstap.proto's SocketProtocol (upstream
// value 7), which golang-dnstap v0.4.0's generated enum predates.
const SocketProtocolDoQ dnstap.SocketProtocol = 7

// frameWriter is a Frame Streams writer; golang-dnstap's writers buffer and
// have Flush, which its Writer interface leaves out.
type frameWriter interface {
	WriteFrame([]byte) (int, error)
	Flush() error
	Close() error
}

// Writer turns the queue into dnstap frames on its file or socket. Open
// makes one, Run runs it.
type Writer struct {
	q *Log
	w frameWriter // the file's stream; nil for a socket until Run dials it
	f *os.File
}

// Open prepares the log's writer. A file is created now, so a path that
// cannot be written fails the caller's start instead of silently logging
// nothing; a socket is dialled by Run, and one without a reader is not an
// error (Run keeps trying, and counts what it drops). An opened Writer
// must be run: Run closes the file. Nil-safe: a nil log has no writer.
func (q *Log) Open() (*Writer, error) {
	if q == nil {
		return nil, nil
	}
	if q.cfg.File == "" {
		return &Writer{q: q}, nil
	}
	f, err := os.OpenFile(q.cfg.File, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("query_log: %w", err)
	}
	w, err := newFrameWriter(f, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("query_log: %s: %w", q.cfg.File, err)
	}
	return &Writer{q: q, w: w, f: f}, nil
}

// newFrameWriter starts a stream on c; a bidirectional one (a socket)
// also reads the reader's handshake from c.
func newFrameWriter(c io.Writer, bidi bool) (frameWriter, error) {
	w, err := dnstap.NewWriter(c, &dnstap.WriterOptions{Bidirectional: bidi, Timeout: dnstapTimeout})
	if err != nil {
		return nil, err
	}
	fw, ok := w.(frameWriter)
	if !ok {
		return nil, errors.New("frame streams writer cannot flush")
	}
	return fw, nil
}

// dial connects to the reader's socket and does the Frame Streams
// handshake (READY, ACCEPT, START).
func (q *Log) dial() (frameWriter, net.Conn, error) {
	c, err := net.DialTimeout("unix", q.cfg.Socket, dnstapTimeout)
	if err != nil {
		return nil, nil, err
	}
	w, err := newFrameWriter(c, true)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	return w, c, nil
}

// Run drains the queue into frames until ctx ends, then drains what is
// left, closes the stream and the file, and returns: the messages queued
// before ctx ended are still written. A socket is dialled, and dialled
// again after a failed write, every dnstapRetry. The caller runs it on a
// goroutine it joins. Nil-safe: a nil writer returns at once.
func (wr *Writer) Run(ctx context.Context) {
	if wr == nil {
		return
	}
	q, w, f := wr.q, wr.w, wr.f
	var conn net.Conn
	closeStream := func() {
		if w != nil {
			_ = w.Close() // STOP, and for a socket waits (bounded) for FINISH
			w = nil
		}
		if conn != nil {
			conn.Close()
			conn = nil
		}
		q.connected.Store(false)
	}
	defer func() {
		closeStream()
		if f != nil {
			f.Close()
		}
	}()
	q.connected.Store(w != nil)
	t := time.NewTicker(logDrainEvery)
	defer t.Stop()
	var nextDial time.Time
	var buf []byte
	reported := false // the missing reader was logged: once per outage
	for {
		stopping := false
		select {
		case <-ctx.Done():
			stopping = true
		case <-t.C:
		}
		if w == nil && q.cfg.Socket != "" && !stopping && !time.Now().Before(nextDial) {
			var err error
			if w, conn, err = q.dial(); err != nil {
				nextDial = time.Now().Add(dnstapRetry)
				if !reported {
					reported = true
					q.log.Warn("query log socket has no reader: messages are dropped and counted until one connects",
						"socket", q.cfg.Socket, "err", err)
				}
			} else {
				reported = false
				q.connected.Store(true)
				q.log.Info("query log connected", "socket", q.cfg.Socket)
			}
		}
		pending := uint64(0)
		for e := q.q.Next(); e != nil; e = q.q.Next() {
			if w == nil {
				q.dropWrite.Add(1)
				q.q.Release()
				continue
			}
			var err error
			if buf, err = q.frame(buf[:0], e); err == nil {
				_, err = w.WriteFrame(buf)
			}
			q.q.Release()
			if err != nil {
				q.writeFailed(err)
				q.dropWrite.Add(pending + 1)
				pending = 0
				closeStream()
				nextDial = time.Now().Add(dnstapRetry)
				continue
			}
			pending++
		}
		if w != nil && pending > 0 {
			if err := w.Flush(); err != nil {
				q.writeFailed(err)
				q.dropWrite.Add(pending)
				closeStream()
				nextDial = time.Now().Add(dnstapRetry)
			} else {
				q.frames.Add(pending)
			}
		}
		if stopping {
			return
		}
	}
}

// writeFailed says what happens after a failed write: a socket is dialled
// again; a file (disk full, I/O error) is not reopened, as that would
// truncate what it holds.
func (q *Log) writeFailed(err error) {
	if q.cfg.Socket != "" {
		q.log.Warn("query log write failed: reconnecting", "socket", q.cfg.Socket, "err", err)
		return
	}
	q.log.Error("query log write failed: messages are dropped and counted until anyfront restarts", "file", q.cfg.File, "err", err)
}

var dnstapProtocols = map[dnswire.Transport]dnstap.SocketProtocol{
	dnswire.UDP: dnstap.SocketProtocol_UDP, dnswire.TCP: dnstap.SocketProtocol_TCP,
	dnswire.DoT: dnstap.SocketProtocol_DOT, dnswire.DoH: dnstap.SocketProtocol_DOH, dnswire.DoQ: SocketProtocolDoQ,
}

var dnstapVersion = []byte("anyfront")

// frame encodes one entry as a dnstap CLIENT_QUERY or CLIENT_RESPONSE
// appended to dst. The query's address is the client's; the response
// address is the listener's, when known.
func (q *Log) frame(dst []byte, e *entry) ([]byte, error) {
	client := e.client.Addr().Unmap()
	fam := dnstap.SocketFamily_INET
	if client.Is6() {
		fam = dnstap.SocketFamily_INET6
	}
	sec, nsec := uint64(e.at/1e9), uint32(e.at%1e9)
	m := &dnstap.Message{
		SocketFamily:   fam.Enum(),
		SocketProtocol: dnstapProtocols[e.tr].Enum(),
		QueryAddress:   client.AsSlice(),
		QueryPort:      proto.Uint32(uint32(e.client.Port())),
	}
	// A listener asked for port 0 knows its port only after binding: an
	// address without one is left out rather than logged wrong.
	if s := e.server.Addr().Unmap(); s.IsValid() && e.server.Port() != 0 && s.Is4() == client.Is4() {
		m.ResponseAddress = s.AsSlice()
		m.ResponsePort = proto.Uint32(uint32(e.server.Port()))
	}
	if e.resp {
		m.Type = dnstap.Message_CLIENT_RESPONSE.Enum()
		m.ResponseTimeSec, m.ResponseTimeNsec = &sec, &nsec
		m.ResponseMessage = e.msg
	} else {
		m.Type = dnstap.Message_CLIENT_QUERY.Enum()
		m.QueryTimeSec, m.QueryTimeNsec = &sec, &nsec
		m.QueryMessage = e.msg
	}
	d := &dnstap.Dnstap{Type: dnstap.Dnstap_MESSAGE.Enum(), Identity: q.identity, Version: dnstapVersion, Message: m}
	return proto.MarshalOptions{}.MarshalAppend(dst, d)
}
