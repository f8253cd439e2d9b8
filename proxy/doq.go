package proxy

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/quic-go/quic-go"

	"github.com/anyfront/anyfront/config"
)

// DNS over QUIC (RFC 9250): one bidirectional stream per query, each message
// with a 2-byte length prefix and ID 0, answered through answerTCP like every
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

// doqFront is a DoQ server. Like dohFront it sits in the TCP listener list
// and runs inside its first Accept, so Run starts, stops and waits for it.
// Its connections have their own bounds, with the TCP limits' values.
type doqFront struct {
	p   *Proxy
	udp *net.UDPConn
	tr  *quic.Transport
	ln  *quic.Listener
	lim config.TCPLimits
	st  *transportStats

	done      chan struct{}
	closeOnce sync.Once
	runOnce   sync.Once
	// started is set by whichever of run and Close comes first: run owns
	// closing the socket once it has begun.
	started atomic.Bool

	mu        sync.Mutex
	total     int
	perClient map[netip.Addr]int
}

func (p *Proxy) listenDoQ(l config.Listen, tc *tls.Config, st *transportStats) (net.Listener, error) {
	lim := p.cfg.Load().Proxy.TCP
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l.Address))
	if err != nil {
		return nil, fmt.Errorf("listen doq %s: %w", l.Address, err)
	}
	tr := &quic.Transport{Conn: udp}
	ln, err := tr.Listen(tc, &quic.Config{
		HandshakeIdleTimeout: doqHandshakeTimeout,
		MaxIdleTimeout:       lim.IdleTimeout,
		// Queries in flight per connection, as for TCP pipelining.
		MaxIncomingStreams:    int64(lim.MaxInflightPerConn),
		MaxIncomingUniStreams: -1, // DoQ uses none
	})
	if err != nil {
		tr.Close()
		udp.Close()
		return nil, fmt.Errorf("listen doq %s: %w", l.Address, err)
	}
	return &doqFront{p: p, udp: udp, tr: tr, ln: ln, lim: lim, st: st,
		done: make(chan struct{}), perClient: map[netip.Addr]int{}}, nil
}

// Accept serves QUIC until Close, then returns net.ErrClosed.
func (d *doqFront) Accept() (net.Conn, error) {
	d.runOnce.Do(d.run)
	return nil, net.ErrClosed
}

func (d *doqFront) run() {
	if !d.started.CompareAndSwap(false, true) {
		return // closed before it ever ran
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var wg sync.WaitGroup
	for {
		conn, err := d.ln.Accept(ctx)
		if err != nil {
			break
		}
		client := udpAddrOf(conn.RemoteAddr())
		if !d.admit(client.Addr()) {
			d.p.Stats.TCPConnsRefused.Add(1)
			_ = conn.CloseWithError(doqExcessiveLoad, "too many connections")
			continue
		}
		d.st.conns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.release(client.Addr())
			d.handleConn(ctx, conn, client)
		}()
	}
	wg.Wait()
	d.tr.Close()
	d.udp.Close()
}

func udpAddrOf(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		return ua.AddrPort()
	}
	return netip.AddrPort{}
}

func (d *doqFront) admit(a netip.Addr) bool {
	a = a.Unmap()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.total >= d.lim.MaxConns || d.perClient[a] >= d.lim.MaxConnsPerClient {
		return false
	}
	d.total++
	d.perClient[a]++
	return true
}

func (d *doqFront) release(a netip.Addr) {
	a = a.Unmap()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total--
	if d.perClient[a]--; d.perClient[a] <= 0 {
		delete(d.perClient, a)
	}
}

// handleConn serves one connection's streams until the client closes it, it
// idles out, it reaches its query or lifetime bound, or the server stops;
// streams already read are answered first.
func (d *doqFront) handleConn(ctx context.Context, conn *quic.Conn, client netip.AddrPort) {
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

func (d *doqFront) handleStream(conn *quic.Conn, s *quic.Stream, client netip.AddrPort) {
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
	f := d.p.tcp
	f.inflight.Add(1)
	resp := d.p.answerTCP(msg, client, dnswire.DoQ)
	f.inflight.Add(-1)
	if resp == nil {
		// Malformed (counted by the front end) or dropped by a rule.
		s.CancelRead(doqProtocolError)
		s.CancelWrite(doqProtocolError)
		return
	}
	buf := make([]byte, 2+len(resp))
	binary.BigEndian.PutUint16(buf, uint16(len(resp)))
	copy(buf[2:], resp)
	_ = s.SetWriteDeadline(time.Now().Add(d.lim.IdleTimeout))
	if _, err := s.Write(buf); err != nil {
		s.CancelWrite(doqProtocolError)
		return
	}
	_ = s.Close() // FIN: one answer per stream
	s.CancelRead(doqNoError)
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
func (d *doqFront) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.ln.Close()
		if d.started.CompareAndSwap(false, true) {
			d.tr.Close()
			d.udp.Close()
		}
	})
	return nil
}

// Addr is the listening address.
func (d *doqFront) Addr() net.Addr { return d.udp.LocalAddr() }

func (d *doqFront) transportStats() (string, *transportStats) { return "doq", d.st }
