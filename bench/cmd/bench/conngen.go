package main

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"
)

// The new-connection generator: clients behind CGNAT and phones reconnect
// often, so what a front end costs per new TLS connection matters as much
// as per query. Each query opens a TCP connection, makes a TLS handshake
// (a full one, or a resumption from a ticket of an earlier connection),
// sends one query (DoT, or DoH over HTTP/2 POST), reads the answer and
// closes. The latency is the first query's: connect + handshake + query,
// from the query's due time.

// benchCurves is the only key exchange the harness's clients offer:
// X25519, which dnsdist 1.7.3 (OpenSSL 3.0) and anyfront (crypto/tls)
// both do. Go's default also offers X25519MLKEM768, which OpenSSL 3.0
// lacks: anyfront would pay for a post-quantum exchange that dnsdist
// never does, and the per-handshake comparison would be of two jobs.
var benchCurves = []tls.CurveID{tls.X25519}

// connSessions is how many sessions the resumption client keeps; all its
// connections go to one server, so one would do.
const connSessions = 64

// connClientConfig is the TLS client config of a new-connection run:
// with resume, one session cache shared by every connection of the run,
// so each resumes from a TLS 1.3 ticket an earlier one received.
func connClientConfig(transport string, resume bool) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
		CurvePreferences: benchCurves}
	if transport == "doh" {
		cfg.NextProtos = []string{"h2"}
	}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(connSessions)
	} else {
		cfg.SessionTicketsDisabled = true
	}
	return cfg
}

// oneConnQuery opens a connection to addr, asks q over it and closes it.
// resumed says whether its handshake resumed a session.
// d is the DoH client (its HTTP/2 transport), nil for DoT.
func oneConnQuery(ctx context.Context, transport, addr string, d *dohClient, cfg *tls.Config, q []byte) (o genOutcome, resumed bool, err error) {
	switch transport {
	case "doh":
		cc, tc, err := d.dial(ctx, cfg)
		if err != nil {
			o, err := timedOut(ctx, err)
			return o, false, err
		}
		defer cc.Close()
		o, err = d.exchange(ctx, cc, q)
		return o, tc.ConnectionState().DidResume, err
	case "dot":
		var nd net.Dialer
		raw, err := nd.DialContext(ctx, "tcp", addr)
		if err != nil {
			o, err := timedOut(ctx, err)
			return o, false, err
		}
		tc := tls.Client(raw, cfg)
		defer tc.Close()
		if dl, ok := ctx.Deadline(); ok {
			_ = tc.SetDeadline(dl)
		}
		if err := tc.HandshakeContext(ctx); err != nil {
			o, err := timedOut(ctx, fmt.Errorf("TLS handshake: %w", err))
			return o, false, err
		}
		resumed = tc.ConnectionState().DidResume
		o, err = dotExchange(ctx, tc, q)
		return o, resumed, err
	}
	return genFailed, false, fmt.Errorf("no new-connection client for transport %q", transport)
}

// dotExchange writes q with its two-byte length (RFC 7858, 1035 4.2.2)
// and reads one answer the same way.
func dotExchange(ctx context.Context, c net.Conn, q []byte) (genOutcome, error) {
	buf := make([]byte, 2+len(q))
	binary.BigEndian.PutUint16(buf, uint16(len(q)))
	copy(buf[2:], q)
	if _, err := c.Write(buf); err != nil {
		return timedOut(ctx, err)
	}
	var n [2]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return timedOut(ctx, err)
	}
	a := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(c, a); err != nil {
		return timedOut(ctx, err)
	}
	if err := checkAnswer(q, a); err != nil {
		return genMismatch, err
	}
	return genAnswered, nil
}

// runConnGen runs one new-connection load: spec.qps new connections per
// second (0: a closed loop, as many as spec.outstanding concurrent
// clients manage), one query each, at most spec.outstanding connections
// open at once.
func runConnGen(ctx context.Context, spec loadSpec) (*loadResult, error) {
	qs, err := loadQueries(spec.data)
	if err != nil {
		return nil, err
	}
	timeout := cmp.Or(spec.timeout, lostAfter)
	cfg := connClientConfig(spec.mode, spec.resume)
	var d *dohClient
	if spec.mode == "doh" {
		d = newDohClient(spec.server, false)
	}
	if spec.resume {
		// One connection before the clock starts fills the session
		// cache, so the measured handshakes all have a ticket to offer.
		pctx, cancel := context.WithTimeout(ctx, 5*timeout)
		o, _, err := oneConnQuery(pctx, spec.mode, spec.server, d, cfg, queryFor(qs, 1<<20))
		cancel()
		if o != genAnswered {
			return nil, fmt.Errorf("%s priming connection to %s: %v", spec.mode, spec.server, err)
		}
	}
	r := pace(ctx, spec.qps, spec.dur, timeout, newSlots(1, spec.outstanding),
		func(qctx context.Context, i int, _ time.Time) (genOutcome, bool, error) {
			return oneConnQuery(qctx, spec.mode, spec.server, d, cfg, queryFor(qs, i))
		})
	sayFailures(spec, r)
	if r.sum.Completed == 0 {
		return r, fmt.Errorf("%s new-connection generator against %s: no query answered (first error: %v)", spec.mode, spec.server, r.firstErr)
	}
	return r, nil
}
