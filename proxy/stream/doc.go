// Package stream holds anyfront's stream front ends: DNS over TCP (RFC
// 7766), DNS over TLS (RFC 7858), DNS over HTTPS (RFC 8484) and DNS over
// QUIC (RFC 9250), and the PROXY protocol v2 listener that may sit in front
// of the TCP ones.
//
// It owns connections: accepting them, TLS, HTTP and QUIC, framing, the
// per-connection bounds (connections in total and per client, queries in
// flight and in total per connection, idle and total time), the
// certificates and their reload, RFC 8484's status codes and the transport
// counters. Every front end has the one shape of Front: Serve until its
// context ends or Close is called, joining every goroutine it started.
//
// It knows nothing of what a query means. Each query read goes whole to
// the core through Handler, once per query on a path that already does TLS,
// HTTP/2 or QUIC (its allocation is nothing beside theirs); the answer, or
// nil for none, goes back to the client. The package never imports proxy,
// reads no config beyond what its constructors are given, and touches none
// of the core's counters but the ones Deps hands it.
package stream

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/stream/h2"
)

// Handler answers queries for the front ends: the core's one validation
// path for stream transports.
type Handler interface {
	// Answer validates and answers msg, a query client sent to local (zero
	// when the front end cannot tell) over tr, and returns the answer to
	// send, or nil to send nothing (a dropped or malformed query). It may
	// be called from many goroutines at once and keeps no reference to msg
	// once it returns.
	Answer(msg []byte, client, local netip.AddrPort, tr dnswire.Transport) []byte
	// AnswerAsync is Answer for front ends that never block a connection
	// on one query: it returns at once, and the answer (nil for none)
	// reaches w.Answered exactly once, maybe before AnswerAsync returns,
	// maybe later from another goroutine. msg is read only until
	// AnswerAsync returns.
	AnswerAsync(msg []byte, client, local netip.AddrPort, tr dnswire.Transport, w Waiter)
}

// Waiter receives one query's answer from Handler.AnswerAsync. Answered
// must not block (it may run on a goroutine that serves many queries) and
// must copy resp if it keeps it: resp is valid only until Answered returns.
type Waiter interface {
	Answered(resp []byte)
}

// A BatchWaiter can take several answers and write them out together: a
// caller with a batch of answers in hand calls Queue for each of its
// answers, then Flush once on every Flusher the Queues returned, before it
// waits for anything else. Queue is Answered without the write; it
// returns nil when there is nothing to flush, or another caller will.
type BatchWaiter interface {
	Waiter
	Queue(resp []byte) Flusher
}

// A Flusher writes the answers queued on one connection.
type Flusher interface{ Flush() }

// Deps are what every front end gets from the core: where queries go, a
// logger, and the core's counters the front ends add to. A nil counter is
// replaced by one of the front end's own.
type Deps struct {
	Handler Handler // required
	Log     *slog.Logger
	// Queries counts queries read off TCP and DoT connections.
	Queries *atomic.Uint64
	// ConnsRefused counts client connections refused over a bound.
	ConnsRefused *atomic.Uint64
	// Short counts zero-length TCP frames, dropped with their connection.
	Short *atomic.Uint64
	// SlowReaders counts TCP, DoT and DoH connections cut off for leaving more
	// answers unread than they may (nbconn.go).
	SlowReaders *atomic.Uint64
}

func (d Deps) withDefaults() Deps {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	for _, c := range []**atomic.Uint64{&d.Queries, &d.ConnsRefused, &d.Short, &d.SlowReaders} {
		if *c == nil {
			*c = new(atomic.Uint64)
		}
	}
	return d
}

// Front is the shape of every front end.
type Front interface {
	// Serve serves until ctx ends or Close is called, then returns once
	// every goroutine it started has stopped: connections stop reading,
	// and queries already read are answered first. It is called once.
	Serve(ctx context.Context) error
	// Close stops accepting and stops every connection's reads. It may be
	// called before Serve (the socket is closed then) and more than once.
	Close() error
	// Inflight is the number of queries read and not yet answered.
	Inflight() int64
	// Counters are the front end's transport counters.
	Counters() *Counters
	// Addr is the address the front end listens on.
	Addr() net.Addr
}

// Counters count what happens on one front end's connections. The zero
// value is ready; only the front end adds to them.
type Counters struct {
	conns         atomic.Uint64 // connections accepted (DoT, DoH) or QUIC connections (DoQ)
	handshakeFail atomic.Uint64 // TLS or QUIC handshakes that failed
	queries       atomic.Uint64 // DoH requests and DoQ streams carrying a query
	badRequests   atomic.Uint64 // DoH 4xx answers, DoQ protocol errors
	ppBadHeader   atomic.Uint64 // connections closed for a missing or bad PROXY header
	ppRefused     atomic.Uint64 // connections closed: too many headers pending
	ppUntrusted   atomic.Uint64 // connections from outside proxy_protocol_from, served plain
	// h2 is a DoH front end's HTTP/2 server's, whose 4xx answers are
	// bad requests too.
	h2 *h2.Stats

	// TLS handshakes, full and resumed, counted as the server verifies
	// them (tls.go), and changed ticket key files that did not load.
	tlsFull, tlsResumed, ticketKeysRejected atomic.Uint64
}

// Counts are transport counters read at one moment, or summed over front
// ends of one protocol.
type Counts struct {
	Conns, HandshakeFailures, Queries, BadRequests uint64
	// ProxyBadHeader counts connections closed for a missing or invalid
	// PROXY header, ProxyRefused those closed because too many headers
	// were pending, ProxyUntrusted those served plain because they came
	// from outside proxy_protocol_from.
	ProxyBadHeader, ProxyRefused, ProxyUntrusted uint64
	// TLSFull counts TLS handshakes with a full key exchange, TLSResumed
	// those that resumed a session from a ticket, TicketKeysRejected
	// changed ticket key files that did not load (the old keys stay).
	TLSFull, TLSResumed, TicketKeysRejected uint64
	// HTTP2Floods counts DoH connections closed for making us queue too
	// many frames (h2.Stats.Floods).
	HTTP2Floods uint64
}

// Add adds c's current values to n.
func (n *Counts) Add(c *Counters) {
	n.Conns += c.conns.Load()
	n.HandshakeFailures += c.handshakeFail.Load()
	n.Queries += c.queries.Load()
	n.BadRequests += c.badRequests.Load()
	n.ProxyBadHeader += c.ppBadHeader.Load()
	n.ProxyRefused += c.ppRefused.Load()
	n.ProxyUntrusted += c.ppUntrusted.Load()
	if c.h2 != nil {
		for _, code := range []int{400, 403, 404, 405, 413, 415, 431} {
			n.BadRequests += c.h2.Responses(code)
		}
		n.HTTP2Floods += c.h2.Floods.Load()
	}
	n.TLSFull += c.tlsFull.Load()
	n.TLSResumed += c.tlsResumed.Load()
	n.TicketKeysRejected += c.ticketKeysRejected.Load()
}
