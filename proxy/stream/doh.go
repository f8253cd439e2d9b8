package stream

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/stream/h2"
)

// DNS over HTTPS (RFC 8484): GET with ?dns= and POST with a
// application/dns-message body, over HTTP/2 or HTTP/1.1 on TLS. Each request
// is one query through the Handler, the path every stream front end shares.
// The front end accepts and handshakes itself, then routes by ALPN: "h2"
// to our own HTTP/2 server (proxy/stream/h2, no goroutine per request, the
// query answered through Handler.AnswerAsync: doh2.go), anything else to
// net/http's HTTP/1.1 server (this file), fed through a listener of ours.

const (
	dohMediaType = "application/dns-message"
	// dohMaxBody is the largest DNS message (its length is 16 bits).
	dohMaxBody = 65535
	// dohMaxHeaderBytes bounds the request line and headers. A GET carries
	// its query base64url-encoded in the URL: 16 KiB fits any query a
	// stub or forwarder sends (an EDNS query with padding is under 1 KiB)
	// and keeps a header flood cheap.
	dohMaxHeaderBytes = 16 << 10
	// dohReadHeaderTimeout bounds a client that opens a request and stalls.
	dohReadHeaderTimeout = 5 * time.Second
	// dohShutdownGrace is how long requests in flight may finish when the
	// proxy stops.
	dohShutdownGrace = 5 * time.Second
)

// DoHConfig configures a DoH front end.
type DoHConfig struct {
	// Limits bound requests and lifetime per connection and streams in
	// flight per HTTP/2 connection, with the TCP limits' values.
	Limits config.TCPLimits
	// Conns is the connection bound shared with the TCP front ends.
	Conns *ConnLimit
	Certs *Certs
	// Path is where queries are answered; "" is "/dns-query".
	Path string
	// AnswerTime is the longest a query may take to answer (the core's
	// deadline and some): a request's write timeout has room for it.
	AnswerTime time.Duration
	// ProxyFrom, when set, are the sources whose connections start with a
	// PROXY protocol v2 header.
	ProxyFrom []netip.Prefix
}

// DoH is a DoH server. Its connections are bounded with the TCP front
// ends' (ConnLimit), their requests and lifetime as a TCP connection's
// queries and lifetime.
type DoH struct {
	ln    net.Listener // TCP, maybe behind PROXY protocol
	pp    *ppListener
	bound *ConnLimit
	path  string
	deps  Deps
	st    Counters
	srv   *http.Server
	h1    *connQueue // TLS connections for srv
	h2    *h2.Server
	tls   *tls.Config
	// h2ctx ends with Close: every HTTP/2 connection then sends GOAWAY and
	// closes once its answers are written.
	h2ctx  context.Context
	stopH2 context.CancelFunc
	// maxQueries bounds requests per connection, as for TCP.
	maxQueries int
	// idle and maxAge bound a connection's backlog writes (nbconn.go).
	idle, maxAge time.Duration

	conns    connSet
	inflight atomic.Int64
	stop     stopper
}

// NewDoH makes a front end serving ln, which it owns from now on.
func NewDoH(ln net.Listener, cfg DoHConfig, deps Deps) *DoH {
	lim := cfg.Limits
	d := &DoH{bound: cfg.Conns, path: cfg.Path, deps: deps.withDefaults(), maxQueries: lim.MaxQueriesPerConn,
		idle: lim.IdleTimeout, maxAge: lim.MaxConnTime}
	if d.bound == nil {
		d.bound = NewConnLimit(lim)
	}
	if d.path == "" {
		d.path = "/dns-query"
	}
	d.ln, d.pp = wrapPROXY(ln, cfg.ProxyFrom, &d.st)
	d.tls = cfg.Certs.tlsConfig("doh")
	d.h1 = newConnQueue(d.ln.Addr())
	d.h2ctx, d.stopH2 = context.WithCancel(context.Background())
	var err error
	d.h2, err = h2.New(h2.Config{
		Path:        d.path,
		MaxStreams:  uint32(max(lim.MaxInflightPerConn, 1)),
		MaxBody:     dohMaxBody,
		IdleTimeout: lim.IdleTimeout,
		MaxConnAge:  lim.MaxConnTime,
		MaxRequests: lim.MaxQueriesPerConn,
	}, dohH2{d})
	if err != nil {
		panic(err) // the config above is always valid
	}
	d.st.h2 = d.h2.Stats()
	d.srv = &http.Server{
		Handler: d,
		// HTTP/2 never reaches net/http: ALPN "h2" is served by d.h2.
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ReadHeaderTimeout: dohReadHeaderTimeout,
		ReadTimeout:       lim.IdleTimeout, // headers and body of one request
		// A request waits at most for its answer, then writes.
		WriteTimeout:   lim.IdleTimeout + cfg.AnswerTime,
		IdleTimeout:    lim.IdleTimeout,
		MaxHeaderBytes: dohMaxHeaderBytes,
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, dohConnKey{}, &dohConnState{end: time.Now().Add(lim.MaxConnTime)})
		},
		// net/http reports bad requests on its error log: logged at
		// Debug only (clients cause them).
		ErrorLog: log.New(&httpErrorLog{log: d.deps.Log, st: &d.st}, "", 0),
	}
	return d
}

// Serve serves HTTP until ctx ends or Close is called; then requests in
// flight finish within dohShutdownGrace.
func (d *DoH) Serve(ctx context.Context) error {
	if !d.stop.start() {
		return nil // closed before it ever ran
	}
	defer context.AfterFunc(ctx, func() { d.Close() })()
	var wg sync.WaitGroup
	if d.pp != nil {
		wg.Go(d.pp.acceptLoop)
	}
	defer wg.Wait()
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(d.h1) }()
	var conns sync.WaitGroup
	acceptErr := make(chan error, 1)
	go func() { acceptErr <- d.acceptLoop(&conns) }()
	var failed error
	select {
	case <-d.stop.closing():
	case err := <-acceptErr:
		if !d.stop.closed() {
			failed = fmt.Errorf("doh server %s: %w", d.ln.Addr(), err)
		}
		d.Close()
	}
	grace, cancel := context.WithTimeout(context.Background(), dohShutdownGrace)
	defer cancel()
	_ = d.srv.Shutdown(grace)
	done := make(chan struct{})
	go func() { conns.Wait(); close(done) }()
	select {
	case <-done:
	case <-grace.Done():
		// Clients that keep streams open past the grace: cut them off.
		d.conns.closeAll()
		<-done
	}
	_ = d.srv.Close()
	d.h1.Close()
	<-errc
	if failed == nil {
		<-acceptErr
	}
	return failed
}

// Close stops the server: no new connections, no new requests on the open
// ones (HTTP/2 connections get GOAWAY); requests in flight finish within
// dohShutdownGrace.
func (d *DoH) Close() error {
	d.stop.close(func(bool) {
		d.ln.Close()
		d.stopH2()
		d.conns.refuseNew()
	})
	return nil
}

// Inflight is the number of requests read and not yet answered.
func (d *DoH) Inflight() int64 { return d.inflight.Load() }

// Counters are the DoH (and PROXY protocol) counters.
func (d *DoH) Counters() *Counters { return &d.st }

// Addr is the listening address.
func (d *DoH) Addr() net.Addr { return d.ln.Addr() }

// dohConnState bounds one connection's requests and lifetime like a TCP
// connection's. HTTP has no way to refuse a request for that, so the request
// that reaches a bound is answered with "Connection: close": HTTP/1.1 closes
// after it, HTTP/2 sends GOAWAY and closes once its streams are done.
type dohConnState struct {
	end time.Time
	n   atomic.Int64
}

type dohConnKey struct{}

// ServeHTTP answers one DoH request.
func (d *DoH) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if cs, ok := r.Context().Value(dohConnKey{}).(*dohConnState); ok {
		if cs.n.Add(1) >= int64(d.maxQueries) || time.Now().After(cs.end) {
			w.Header().Set("Connection", "close")
		}
	}
	if r.URL.Path != d.path {
		d.fail(w, http.StatusNotFound, "not found")
		return
	}
	var msg []byte
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query().Get("dns")
		if q == "" {
			d.fail(w, http.StatusBadRequest, "missing dns parameter")
			return
		}
		// RFC 8484 says unpadded base64url; padded is accepted too.
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(q, "="))
		if err != nil {
			d.fail(w, http.StatusBadRequest, "dns parameter is not base64url")
			return
		}
		msg = b
	case http.MethodPost:
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != dohMediaType {
			d.fail(w, http.StatusUnsupportedMediaType, "content type must be "+dohMediaType)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, dohMaxBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				d.fail(w, http.StatusRequestEntityTooLarge, "body larger than a DNS message")
			} else {
				d.fail(w, http.StatusBadRequest, "body not read")
			}
			return
		}
		msg = b
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		d.fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	if len(msg) > dohMaxBody {
		d.fail(w, http.StatusRequestEntityTooLarge, "query larger than a DNS message")
		return
	}
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	d.st.queries.Add(1)
	d.inflight.Add(1) // the core's drain waits for these too
	resp := d.deps.Handler.Answer(msg, client, netip.AddrPort{}, dnswire.DoH)
	d.inflight.Add(-1)
	if resp == nil {
		// Dropped: malformed (counted by the core) or a drop rule.
		var v dnswire.View
		if v.ParseQuery(msg) != nil {
			d.fail(w, http.StatusBadRequest, "malformed DNS query")
		} else {
			d.fail(w, http.StatusForbidden, "query dropped")
		}
		return
	}
	h := w.Header()
	h.Set("Content-Type", dohMediaType)
	h.Set("Content-Length", strconv.Itoa(len(resp)))
	h.Set("Cache-Control", "max-age="+strconv.FormatUint(uint64(answerTTL(resp)), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp)
	}
}

func (d *DoH) fail(w http.ResponseWriter, code int, why string) {
	d.st.badRequests.Add(1)
	http.Error(w, why, code)
}

// answerTTL is how long an HTTP cache may keep an answer (RFC 8484 5.1): the
// smallest TTL of its answer and authority records, the SOA's MINIMUM
// counting for negative answers (RFC 2308); 0 when it has none.
func answerTTL(resp []byte) uint32 {
	var v dnswire.View
	if v.ParseHeader(resp) != nil {
		return 0
	}
	off := dnswire.HeaderLen
	for i := 0; i < int(v.QDCount); i++ {
		end, ok := dnswire.SkipName(resp, off)
		if !ok || end+4 > len(resp) {
			return 0
		}
		off = end + 4
	}
	var ttl uint32
	seen := false
	for i := 0; i < int(v.ANCount)+int(v.NSCount); i++ {
		nameEnd, ok := dnswire.SkipName(resp, off)
		if !ok || nameEnd+10 > len(resp) {
			return 0
		}
		next, typ, ok := dnswire.SkipRecord(resp, off)
		if !ok {
			return 0
		}
		t := binary.BigEndian.Uint32(resp[nameEnd+4:])
		if typ == 6 && i >= int(v.ANCount) && next-4 >= nameEnd+10 {
			t = min(t, binary.BigEndian.Uint32(resp[next-4:]))
		}
		if typ != dnswire.TypeOPT && (!seen || t < ttl) {
			ttl, seen = t, true
		}
		off = next
	}
	return ttl
}

// httpErrorLog receives net/http's error log lines.
type httpErrorLog struct {
	log *slog.Logger
	st  *Counters
}

func (l *httpErrorLog) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	if strings.Contains(line, "TLS handshake error") {
		l.st.handshakeFail.Add(1)
	}
	l.log.Debug("doh", "reason", line)
	return len(b), nil
}

// admittedConn gives its slot back when closed.
type admittedConn struct {
	net.Conn
	nb     *nbConn // Conn itself
	d      *DoH
	client netip.AddrPort
	once   sync.Once
}

// Close is the servers' (HTTP/2's, net/http's) at a connection's end: the
// backlog goes out first, so a slow reader still gets its last answers.
// The front end's own Close closes the nbConn itself, at once.
func (c *admittedConn) Close() error {
	c.once.Do(func() {
		c.nb.drained()
		c.Conn.Close()
		c.d.bound.release(c.client.Addr())
		c.d.conns.remove(c.Conn)
	})
	return nil
}
