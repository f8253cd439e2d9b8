package stream

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/stream/h2"
)

// acceptLoop admits DoH connections under the shared connection bounds
// (total and per client, counted with TCP and DoT connections) and serves
// each on a goroutine of its own, tracked by conns, until the listener
// closes.
func (d *DoH) acceptLoop(conns *sync.WaitGroup) error {
	for {
		c, err := d.ln.Accept()
		if err != nil {
			if d.stop.closed() {
				return nil
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of fds and the like: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		client := addrOf(c.RemoteAddr())
		nb := newNBConn(c, d.idle, time.Now().Add(d.maxAge), d.deps.SlowReaders)
		c = nb
		if !admitConn(&d.conns, d.bound, c, client) {
			d.deps.ConnsRefused.Add(1)
			c.Close()
			continue
		}
		d.st.conns.Add(1)
		ac := &admittedConn{Conn: c, nb: nb, d: d, client: client}
		conns.Go(func() { d.serveConn(ac) })
	}
}

// serveConn handshakes one connection and serves it over HTTP/2 itself, or
// hands it to net/http for HTTP/1.1.
func (d *DoH) serveConn(c *admittedConn) {
	tc := tls.Server(c, d.tls)
	// A client that stalls its handshake is bounded like one that stalls
	// its request headers.
	_ = tc.SetDeadline(time.Now().Add(dohReadHeaderTimeout))
	if err := tc.HandshakeContext(d.h2ctx); err != nil {
		d.st.handshakeFail.Add(1)
		d.deps.Log.Debug("doh", "reason", "tls handshake", "client", c.client, "err", err)
		tc.Close()
		return
	}
	_ = tc.SetDeadline(time.Time{})
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		if err := d.h2.ServeConn(d.h2ctx, neverWaits{tc}); err != nil {
			d.deps.Log.Debug("doh", "reason", "http/2", "client", c.client, "err", err)
		}
		return
	}
	if !d.h1.push(tc) {
		tc.Close()
	}
}

// dohH2 is the HTTP/2 server's handler: each request's query goes to the
// core without blocking the connection's reader.
type dohH2 struct{ d *DoH }

func (h dohH2) ServeDNS(r *h2.Request) {
	d := h.d
	d.st.queries.Add(1)
	d.inflight.Add(1) // the core's drain waits for these too
	w := dohWaiters.Get().(*dohWaiter)
	w.d, w.r = d, r
	d.deps.Handler.AnswerAsync(r.Query, addrOf(r.Remote), addrOf(r.Local), dnswire.DoH, w)
}

// dohWaiter takes one HTTP/2 request's answer from the core.
type dohWaiter struct {
	d *DoH
	r *h2.Request
}

var dohWaiters = sync.Pool{New: func() any { return new(dohWaiter) }}

func (w *dohWaiter) Answered(resp []byte) {
	if f := w.Queue(resp); f != nil {
		f.Flush()
	}
}

// Queue queues the answer on the request's connection and returns the
// connection if the caller is to flush it.
func (w *dohWaiter) Queue(resp []byte) Flusher {
	d, r := w.d, w.r
	w.d, w.r = nil, nil
	dohWaiters.Put(w)
	var f h2.Flusher
	switch {
	case resp != nil:
		f = r.Queue(200, resp, answerTTL(resp))
	case malformed(r.Query):
		f = r.Queue(400, nil, 0) // counted by the core as malformed
	default:
		f = r.Queue(403, nil, 0) // a drop rule
	}
	d.inflight.Add(-1)
	return f
}

func malformed(msg []byte) bool {
	var v dnswire.View
	return v.ParseQuery(msg) != nil
}

// connQueue is the net.Listener net/http's HTTP/1.1 server accepts from:
// connections the DoH front end admitted and handshook.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the server; false once the queue is closed.
func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }
