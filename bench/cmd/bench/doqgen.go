package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go"
)

// The DoQ load generator (RFC 9250): dnsperf 2.10 has no DoQ, and dnsdist
// 1.7.3 serves none, so this workload measures anyfront alone, to set
// beside its DoT at the same loads. spec.clients QUIC connections, each
// query a bidirectional stream of its own (the 2-byte length, the query
// with ID 0 as RFC 9250 4.2.1 wants, FIN; the answer read to the stream's
// end), at most spec.outstanding streams in flight per connection. The
// connections are made before the clock starts; one the server closes is
// made again when the next query needs it.

// doqConn is one of the generator's connections.
type doqConn struct {
	mu   sync.Mutex
	conn *quic.Conn
	all  []*quic.Conn // every one opened, closed at the end
}

// doqClient is the state shared by a run's connections.
type doqClient struct {
	addr string
	tls  *tls.Config
	quic *quic.Config
}

func newDoqClient(addr string) *doqClient {
	return &doqClient{
		addr: addr,
		tls: &tls.Config{
			// The harness made the certificate; it measures, not verifies.
			InsecureSkipVerify: true,
			NextProtos:         []string{"doq"},
			CurvePreferences:   benchCurves,
		},
		quic: &quic.Config{
			MaxIdleTimeout: 30 * time.Second,
			// The server grants the streams; ask for none of ours.
			MaxIncomingStreams: -1,
		},
	}
}

// conn returns c's connection, dialling a new one when there is none or
// the server has closed it.
func (d *doqClient) conn(ctx context.Context, c *doqConn) (*quic.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && c.conn.Context().Err() == nil {
		return c.conn, nil
	}
	conn, err := quic.DialAddr(ctx, d.addr, d.tls, d.quic)
	if err != nil {
		return nil, fmt.Errorf("QUIC handshake: %w", err)
	}
	c.conn = conn
	c.all = append(c.all, conn)
	return conn, nil
}

// exchange asks q (ID 0) on a new stream of conn and checks the answer.
func doqExchange(ctx context.Context, conn *quic.Conn, q []byte) (genOutcome, error) {
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return timedOut(ctx, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(dl)
	}
	msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q)))
	msg = append(msg, q...)
	if _, err := s.Write(msg); err != nil {
		s.CancelRead(0)
		return timedOut(ctx, err)
	}
	s.Close() // FIN: the query is whole
	resp, err := io.ReadAll(io.LimitReader(s, 2+dns.MaxMsgSize+1))
	if err != nil {
		s.CancelRead(0)
		return timedOut(ctx, err)
	}
	if len(resp) < 2 || int(binary.BigEndian.Uint16(resp)) != len(resp)-2 {
		return genFailed, fmt.Errorf("DoQ framing: %d bytes for a length of %d", len(resp), binary.BigEndian.Uint16(resp))
	}
	if err := checkAnswer(q, resp[2:]); err != nil {
		return genMismatch, err
	}
	return genAnswered, nil
}

// runDoqGen runs one DoQ load: the counterpart of runDnsperf for mode doq.
func runDoqGen(ctx context.Context, spec loadSpec) (*loadResult, error) {
	qs, err := loadQueries(spec.data)
	if err != nil {
		return nil, err
	}
	d := newDoqClient(spec.server)
	conns := make([]*doqConn, spec.clients)
	for i := range conns {
		conns[i] = &doqConn{}
	}
	defer func() {
		for _, c := range conns {
			for _, conn := range c.all {
				_ = conn.CloseWithError(0, "")
			}
		}
	}()
	timeout := cmp.Or(spec.timeout, lostAfter)
	for _, c := range conns {
		dctx, cancel := context.WithTimeout(ctx, timeout*5)
		_, err := d.conn(dctx, c)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("DoQ connection to %s: %w", spec.server, err)
		}
	}
	r := pace(ctx, spec.qps, spec.dur, timeout, newSlots(spec.clients, spec.outstanding),
		func(qctx context.Context, i int, _ time.Time) (genOutcome, bool, error) {
			c := conns[i%len(conns)]
			conn, err := d.conn(qctx, c)
			if err != nil {
				o, err := timedOut(qctx, err)
				return o, false, err
			}
			q := queryFor(qs, i)
			q[0], q[1] = 0, 0 // RFC 9250: the ID is 0 on the wire
			o, err := doqExchange(qctx, conn, q)
			var ae *quic.ApplicationError
			if o == genFailed && (conn.Context().Err() != nil || errors.As(err, &ae)) {
				// Opened as the server closed the connection: ask again
				// on a new one, as a client would.
				if conn, err = d.conn(qctx, c); err != nil {
					o, err := timedOut(qctx, err)
					return o, false, err
				}
				o, err = doqExchange(qctx, conn, q)
			}
			return o, false, err
		})
	sayFailures(spec, r)
	if r.sum.Completed == 0 {
		return r, fmt.Errorf("DoQ generator against %s: no query answered (first error: %v)", spec.server, r.firstErr)
	}
	return r, nil
}
