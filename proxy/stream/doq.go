package stream

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

// DNS over QUIC (RFC 9250): one bidirectional stream per query, each message
// with a 2-byte length prefix and ID 0, answered through the Handler like every
// stream front end. quic-go carries QUIC itself.

// DoQ error codes (RFC 9250 4.3).
const (
	doqNoError       = 0x0
	doqProtocolError = 0x2
	doqExcessiveLoad = 0x4
)

// doqHandshakeTimeout bounds a QUIC handshake, as dohReadHeaderTimeout does
// for HTTP: a client that starts one and stalls is dropped.
const doqHandshakeTimeout = 5 * time.Second

// DoQConfig configures a DoQ front end.
type DoQConfig struct {
	// Limits bound connections, their streams, lifetime and idle time,
	// with the TCP limits' values; DoQ connections have bounds of their
	// own, apart from the TCP front ends'.
	Limits config.TCPLimits
	Certs  *Certs
}

// DoQ is a DoQ server.
type DoQ struct {
	udp   *net.UDPConn
	tr    *quic.Transport
	ln    *quic.Listener
	lim   config.TCPLimits
	bound *ConnLimit
	deps  Deps
	st    Counters

	inflight atomic.Int64
	// stop says whether Serve began: Serve owns closing the socket once
	// it has, Close before that.
	stop stopper
}

// NewDoQ makes a front end serving QUIC on udp, which it owns from now on
// (it is closed when NewDoQ fails).
func NewDoQ(udp *net.UDPConn, cfg DoQConfig, deps Deps) (*DoQ, error) {
	lim := cfg.Limits
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(cfg.Certs.tlsConfig("doq"), &quic.Config{
		HandshakeIdleTimeout: doqHandshakeTimeout,
		MaxIdleTimeout:       lim.IdleTimeout,
		// Queries in flight per connection, as for TCP pipelining.
		MaxIncomingStreams:    int64(lim.MaxInflightPerConn),
		MaxIncomingUniStreams: -1, // DoQ uses none
	})
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, err
	}
	return &DoQ{udp: udp, tr: tr, ln: ln, lim: lim, bound: NewConnLimit(lim), deps: deps.withDefaults()}, nil
}

// Serve serves QUIC until ctx ends or Close is called; connections finish
// the streams they have read.
func (d *DoQ) Serve(ctx context.Context) error {
	if !d.stop.start() {
		return nil // closed before it ever ran
	}
	defer context.AfterFunc(ctx, func() { d.Close() })()
	// Accept and every connection's streams end with ctx, which Close
	// ends too.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-d.stop.closing():
			cancel()
		case <-ctx.Done():
		}
	})
	for {
		conn, err := d.ln.Accept(ctx)
		if err != nil {
			break
		}
		client := udpAddrOf(conn.RemoteAddr())
		if !d.bound.admit(client.Addr()) {
			d.deps.ConnsRefused.Add(1)
			_ = conn.CloseWithError(doqExcessiveLoad, "too many connections")
			continue
		}
		d.st.conns.Add(1)
		wg.Go(func() {
			defer d.bound.release(client.Addr())
			d.handleConn(ctx, conn, client)
		})
	}
	cancel()
	wg.Wait()
	d.tr.Close()
	d.udp.Close()
	return nil
}

func udpAddrOf(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	return netip.AddrPort{}
}

// Conns is the number of QUIC connections open.
func (d *DoQ) Conns() int { return d.bound.Conns() }

// handleConn serves one connection's streams until the client closes it, it
// idles out, it reaches its query or lifetime bound, or the server stops;
// streams already read are answered first.
func (d *DoQ) handleConn(ctx context.Context, conn *quic.Conn, client netip.AddrPort) {
	ctx, cancel := context.WithTimeout(ctx, d.lim.MaxConnTime)
	defer cancel()
	var wg sync.WaitGroup
	for q := 0; q < d.lim.MaxQueriesPerConn; q++ {
		s, err := conn.AcceptStream(ctx)
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.handleStream(conn, s, client)
		}()
	}
	wg.Wait()
	_ = conn.CloseWithError(doqNoError, "")
}

var errDoQID = errors.New("doq: message ID is not 0")

func (d *DoQ) handleStream(conn *quic.Conn, s *quic.Stream, client netip.AddrPort) {
	_ = s.SetReadDeadline(time.Now().Add(d.lim.IdleTimeout))
	msg, err := readDoQ(s)
	if err != nil {
		d.st.badRequests.Add(1)
		if errors.Is(err, errDoQID) {
			// RFC 9250 4.2.1: a non-zero ID is a protocol error.
			_ = conn.CloseWithError(doqProtocolError, "message ID is not 0")
			return
		}
		s.CancelRead(doqProtocolError)
		s.CancelWrite(doqProtocolError)
		return
	}
	d.st.queries.Add(1)
	d.inflight.Add(1)
	// The stream has its goroutine already (quic-go's streams are read
	// that way): it waits here while the query goes to a backend over UDP
	// through the shard's in-flight table, as a DoT query does, instead
	// of over TCP.
	w := make(doqWaiter, 1)
	d.deps.Handler.AnswerAsync(msg, client, netip.AddrPort{}, dnswire.DoQ, w)
	buf := <-w
	d.inflight.Add(-1)
	if buf == nil {
		// Malformed (counted by the core) or dropped by a rule.
		s.CancelRead(doqProtocolError)
		s.CancelWrite(doqProtocolError)
		return
	}
	_ = s.SetWriteDeadline(time.Now().Add(d.lim.IdleTimeout))
	if _, err := s.Write(buf); err != nil {
		s.CancelWrite(doqProtocolError)
		return
	}
	_ = s.Close() // FIN: one answer per stream
	s.CancelRead(doqNoError)
}

// doqWaiter hands a stream's answer, framed, to the stream's goroutine.
type doqWaiter chan []byte

func (w doqWaiter) Answered(resp []byte) {
	if resp == nil {
		w <- nil
		return
	}
	buf := make([]byte, 2+len(resp))
	binary.BigEndian.PutUint16(buf, uint16(len(resp)))
	copy(buf[2:], resp)
	w <- buf
}

// readDoQ reads one length-prefixed query from a stream.
func readDoQ(r io.Reader) ([]byte, error) {
	var lenBuf [2]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(lenBuf[:]))
	if n < dnswire.HeaderLen {
		return nil, dnswire.ErrShort
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	if msg[0] != 0 || msg[1] != 0 {
		return nil, errDoQID
	}
	return msg, nil
}

// Close stops accepting; connections finish the streams they have read.
func (d *DoQ) Close() error {
	d.stop.close(func(started bool) {
		d.ln.Close()
		if !started {
			d.tr.Close()
			d.udp.Close()
		}
	})
	return nil
}

// Inflight is the number of queries read and not yet answered.
func (d *DoQ) Inflight() int64 { return d.inflight.Load() }

// Counters are the DoQ counters.
func (d *DoQ) Counters() *Counters { return &d.st }

// Addr is the listening address.
func (d *DoQ) Addr() net.Addr { return d.udp.LocalAddr() }
