package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/http2"
)

// The DoH load generator: dnsperf 2.10 loses answers when two arrive in
// one TLS read (DNS-OARC/dnsperf#240), so the harness speaks DoH itself,
// on golang.org/x/net/http2's client: spec.clients connections, each one
// TLS connection with one http2.ClientConn, up to spec.outstanding streams
// in flight on each. Every ClientConn is made with NewClientConn on a
// connection dialled here, not taken from the pooled Transport: that one
// with StrictMaxConcurrentStreams deadlocked in earlier tests, and without
// it would open connections of its own.

// dohConn is one of the generator's connections. A connection the server
// closes (GOAWAY after its queries-per-connection limit, or an error) is
// replaced by a new one when the next query needs it.
type dohConn struct {
	mu  sync.Mutex
	cc  *http2.ClientConn
	all []*http2.ClientConn // every one opened, closed at the end
}

// dohClient is the state shared by a run's connections.
type dohClient struct {
	addr string
	get  bool // GET ?dns= instead of POST
	tr   *http2.Transport
	tls  *tls.Config
}

func newDohClient(addr string, get bool) *dohClient {
	cfg := &tls.Config{
		// The harness made the certificate; it measures, not verifies.
		InsecureSkipVerify: true,
		NextProtos:         []string{"h2"},
		CurvePreferences:   benchCurves,
		// No session cache: each of the few long-lived connections makes
		// one full handshake; resumption is the dohconn workloads' job.
	}
	return &dohClient{addr: addr, get: get, tls: cfg, tr: &http2.Transport{TLSClientConfig: cfg}}
}

// dial opens one TLS connection speaking h2 and its ClientConn.
func (d *dohClient) dial(ctx context.Context, cfg *tls.Config) (*http2.ClientConn, *tls.Conn, error) {
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, nil, err
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, nil, fmt.Errorf("TLS handshake: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
		tc.Close()
		return nil, nil, fmt.Errorf("ALPN %q, want h2", p)
	}
	cc, err := d.tr.NewClientConn(tc)
	if err != nil {
		tc.Close()
		return nil, nil, err
	}
	return cc, tc, nil
}

// conn returns c's ClientConn, dialling a new one when there is none or
// the server has closed or is closing it.
func (d *dohClient) conn(ctx context.Context, c *dohConn) (*http2.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cc != nil {
		if st := c.cc.State(); !st.Closed && !st.Closing {
			return c.cc, nil
		}
	}
	cc, _, err := d.dial(ctx, d.tls)
	if err != nil {
		return nil, err
	}
	c.cc = cc
	c.all = append(c.all, cc)
	return cc, nil
}

// request is the HTTP request carrying query q (RFC 8484 4.1).
func (d *dohClient) request(ctx context.Context, q []byte) (*http.Request, error) {
	u := "https://" + d.addr + dohPath
	var req *http.Request
	var err error
	if d.get {
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u+"?dns="+base64.RawURLEncoding.EncodeToString(q), nil)
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(q))
		if err == nil {
			req.Header.Set("Content-Type", "application/dns-message")
		}
	}
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/dns-message")
	return req, nil
}

// exchange sends q on cc and checks the answer.
func (d *dohClient) exchange(ctx context.Context, cc *http2.ClientConn, q []byte) (genOutcome, error) {
	req, err := d.request(ctx, q)
	if err != nil {
		return genFailed, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return timedOut(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, dns.MaxMsgSize+1))
	if err != nil {
		return timedOut(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		return genFailed, fmt.Errorf("HTTP %s", resp.Status)
	}
	if err := checkAnswer(q, body); err != nil {
		return genMismatch, err
	}
	return genAnswered, nil
}

// timedOut classes err as a lost query when the query's deadline passed
// (the server did not answer in time), as a failure otherwise.
func timedOut(ctx context.Context, err error) (genOutcome, error) {
	// The DoT client's socket deadline is the context's, so its timeout
	// can come back a moment before ctx.Err() is set.
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return genLost, err
	}
	return genFailed, err
}

// runDohGen runs one DoH load with the harness's own generator: the
// counterpart of runDnsperf for mode doh.
func runDohGen(ctx context.Context, spec loadSpec) (*loadResult, error) {
	qs, err := loadQueries(spec.data)
	if err != nil {
		return nil, err
	}
	d := newDohClient(spec.server, spec.dohGET)
	conns := make([]*dohConn, spec.clients)
	for i := range conns {
		conns[i] = &dohConn{}
	}
	defer func() {
		for _, c := range conns {
			for _, cc := range c.all {
				cc.Close()
			}
		}
	}()
	// The connections are opened before the clock starts, as dnsperf
	// does: this workload measures queries, not handshakes.
	for _, c := range conns {
		dctx, cancel := context.WithTimeout(ctx, cmp.Or(spec.timeout, lostAfter)*5)
		_, err := d.conn(dctx, c)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("DoH connection to %s: %w", spec.server, err)
		}
	}
	timeout := cmp.Or(spec.timeout, lostAfter)
	r := pace(ctx, spec.qps, spec.dur, timeout, newSlots(spec.clients, spec.outstanding),
		func(qctx context.Context, i int, _ time.Time) (genOutcome, bool, error) {
			cc, err := d.conn(qctx, conns[i%len(conns)])
			if err != nil {
				o, err := timedOut(qctx, err)
				return o, false, err
			}
			q := queryFor(qs, i)
			o, err := d.exchange(qctx, cc, q)
			if st := cc.State(); o == genFailed && (st.Closing || st.Closed) {
				// Sent as the server closed the connection (GOAWAY
				// after its queries-per-connection limit): a client
				// asks again on a new one, and so does this.
				if cc, err = d.conn(qctx, conns[i%len(conns)]); err != nil {
					o, err := timedOut(qctx, err)
					return o, false, err
				}
				o, err = d.exchange(qctx, cc, q)
			}
			return o, false, err
		})
	sayFailures(spec, r)
	if r.sum.Completed == 0 {
		return r, fmt.Errorf("DoH generator against %s: no query answered (first error: %v)", spec.server, r.firstErr)
	}
	return r, nil
}
