package proxy

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/anyfront/anyfront/config"
)

// DNS over HTTPS (RFC 8484): GET with ?dns= and POST with a
// application/dns-message body, over HTTP/2 or HTTP/1.1 on TLS. Each request
// is one query through answerTCP, the path every stream front end shares.

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

// dohFront is a DoH server. It sits in the proxy's TCP listener list as a
// listener whose first Accept runs the HTTP server until Close, so Run
// starts it after the TCP front end exists (connections share its bounds)
// and waits for it like the other accept loops.
type dohFront struct {
	p     *Proxy
	ln    net.Listener // TCP, maybe behind PROXY protocol
	certs *certStore
	path  string
	st    *transportStats
	srv   *http.Server
	// maxQueries bounds requests per connection, as for TCP.
	maxQueries int

	done      chan struct{}
	closeOnce sync.Once
	runOnce   sync.Once
}

func (p *Proxy) newDoHFront(ln net.Listener, l config.Listen, certs *certStore, st *transportStats) *dohFront {
	cfg := p.cfg.Load()
	lim := cfg.Proxy.TCP
	d := &dohFront{p: p, ln: ln, certs: certs, path: l.Path, st: st, done: make(chan struct{}), maxQueries: lim.MaxQueriesPerConn}
	if d.path == "" {
		d.path = "/dns-query"
	}
	// A request waits at most for its query's deadline, then writes.
	answerTime := cfg.Proxy.Deadline + time.Second
	d.srv = &http.Server{
		Handler:           d,
		TLSConfig:         certs.tlsConfig("doh"),
		ReadHeaderTimeout: dohReadHeaderTimeout,
		ReadTimeout:       lim.IdleTimeout, // headers and body of one request
		WriteTimeout:      lim.IdleTimeout + answerTime,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    dohMaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			// As many streams as a TCP connection may pipeline queries.
			MaxConcurrentStreams: lim.MaxInflightPerConn,
			MaxReadFrameSize:     1 << 14, // the HTTP/2 minimum; DNS messages are small
		},
		ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
			return context.WithValue(ctx, dohConnKey{}, &dohConnState{end: time.Now().Add(lim.MaxConnTime)})
		},
		// net/http reports failed handshakes and bad frames on its
		// error log: counted, and logged at Debug only (clients cause them).
		ErrorLog: log.New(&httpErrorLog{p: p, st: st}, "", 0),
	}
	return d
}

// Accept serves HTTP until Close, then returns net.ErrClosed.
func (d *dohFront) Accept() (net.Conn, error) {
	d.runOnce.Do(d.run)
	return nil, net.ErrClosed
}

func (d *dohFront) run() {
	select {
	case <-d.done: // closed before it ever ran
		return
	default:
	}
	errc := make(chan error, 1)
	go func() { errc <- d.srv.ServeTLS(&admitListener{Listener: d.ln, f: d.p.tcp, st: d.st}, "", "") }()
	select {
	case <-d.done:
	case err := <-errc:
		select {
		case <-d.done: // Close raced ServeTLS: not a failure
		default:
			d.p.log.Error("doh server stopped", "address", d.ln.Addr().String(), "err", err)
		}
		d.ln.Close()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), dohShutdownGrace)
	defer cancel()
	_ = d.srv.Shutdown(ctx)
	_ = d.srv.Close()
	<-errc
}

// Close stops the server: no new connections; requests in flight finish
// within dohShutdownGrace.
func (d *dohFront) Close() error {
	d.closeOnce.Do(func() {
		close(d.done)
		d.ln.Close()
	})
	return nil
}

// Addr is the listening address.
func (d *dohFront) Addr() net.Addr { return d.ln.Addr() }

func (d *dohFront) transportStats() (string, *transportStats) { return "doh", d.st }

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
func (d *dohFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	f := d.p.tcp
	f.inflight.Add(1) // Run's drain waits for these too
	resp := d.p.answerTCP(msg, client, dnswire.DoH)
	f.inflight.Add(-1)
	if resp == nil {
		// Dropped: malformed (counted by the front end) or a drop rule.
		var v msgView
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

func (d *dohFront) fail(w http.ResponseWriter, code int, why string) {
	d.st.badRequests.Add(1)
	http.Error(w, why, code)
}

// answerTTL is how long an HTTP cache may keep an answer (RFC 8484 5.1): the
// smallest TTL of its answer and authority records, the SOA's MINIMUM
// counting for negative answers (RFC 2308); 0 when it has none.
func answerTTL(resp []byte) uint32 {
	var v msgView
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
	p  *Proxy
	st *transportStats
}

func (l *httpErrorLog) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	if strings.Contains(line, "TLS handshake error") {
		l.st.handshakeFail.Add(1)
	}
	l.p.log.Debug("doh", "reason", line)
	return len(b), nil
}

// admitListener puts DoH connections under the TCP front end's connection
// bounds (total and per client), counted with TCP and DoT connections.
type admitListener struct {
	net.Listener
	f  *tcpFront
	st *transportStats
}

func (l *admitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		client := addrOf(c.RemoteAddr())
		if !l.f.admit(c, client) {
			l.f.p.Stats.TCPConnsRefused.Add(1)
			c.Close()
			continue
		}
		l.st.conns.Add(1)
		return &admittedConn{Conn: c, f: l.f, client: client}, nil
	}
}

// admittedConn gives its slot back when closed.
type admittedConn struct {
	net.Conn
	f      *tcpFront
	client netip.AddrPort
	once   sync.Once
}

func (c *admittedConn) Close() error {
	c.once.Do(func() { c.f.release(c.Conn, c.client) })
	return nil
}
