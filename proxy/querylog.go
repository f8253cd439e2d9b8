package proxy

import (
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"
)

// maxLoggedMsg bounds the message one queue slot holds: every UDP query
// fits (maxQuerySize) and nearly every answer does. Larger ones (big
// answers over TCP) are counted as dropped, so the queue's memory stays
// within queue × maxLoggedMsg whatever the traffic.
const maxLoggedMsg = 4096

// logSlotStart is a slot's buffer before traffic grows it: a typical
// answer fits, so most slots never grow.
const logSlotStart = 512

// queryLog is the opt-in dnstap query log. The query path copies sampled
// messages into a bounded ring (no lock, no allocation once the slots
// have grown, no waiting: a full ring drops and counts); one writer
// goroutine turns them into dnstap frames. With the log off the proxy
// holds a nil *queryLog and every hook returns at its first line.
type queryLog struct {
	cfg       *config.QueryLog
	sample    uint32
	responses bool
	q         *ring[logEntry]
	identity  []byte
	log       *slog.Logger

	frames    atomic.Uint64 // written to the file or socket
	dropFull  atomic.Uint64 // the ring was full
	dropBig   atomic.Uint64 // larger than maxLoggedMsg
	dropWrite atomic.Uint64 // no reader connected, or the write failed
	connected atomic.Bool   // the socket has a reader (files: always)
}

// logEntry is one message waiting for the writer.
type logEntry struct {
	resp   bool
	tr     dnswire.Transport
	client netip.AddrPort
	server netip.AddrPort // the address the query came to; zero when unknown
	at     int64          // wall clock, Unix nanoseconds
	msg    []byte
}

func newQueryLog(c *config.QueryLog, log *slog.Logger) *queryLog {
	if c == nil {
		return nil
	}
	id := c.Identity
	if id == "" {
		id, _ = os.Hostname()
	}
	return &queryLog{
		cfg: c, sample: uint32(max(c.Sample, 1)), responses: c.Responses, identity: []byte(id), log: log,
		q: newRing(c.Queue, func(e *logEntry) { e.msg = make([]byte, 0, logSlotStart) }),
	}
}

// sampled picks one message in sample by a hash of the client's port and
// the DNS ID, both of which its response carries too: a sampled query's
// response is logged with it, with no state kept between the two.
func (q *queryLog) sampled(msg []byte, client netip.AddrPort) bool {
	if q.sample <= 1 {
		return true
	}
	if len(msg) < 2 {
		return false
	}
	h := (uint32(msg[0])<<8 | uint32(msg[1])) ^ uint32(client.Port())<<16
	h *= 0x9E3779B1 // Fibonacci hashing spreads sequential IDs and ports
	return (h>>7)%q.sample == 0
}

// query logs a query from client that came over tr to server (zero when
// the listener's address is not at hand). Nil-safe: a nil log is off, and
// this much inlines into the caller, so off costs one comparison.
func (q *queryLog) query(tr dnswire.Transport, client, server netip.AddrPort, msg []byte) {
	if q != nil {
		q.add(false, tr, client, server, msg)
	}
}

// response logs the answer sent to client, when responses are logged and
// its query was sampled. Nil-safe.
func (q *queryLog) response(tr dnswire.Transport, client, server netip.AddrPort, msg []byte) {
	if q != nil && q.responses && len(msg) > 0 {
		q.add(true, tr, client, server, msg)
	}
}

// queryUDP and responseUDP are query and response for a UDP client's raw
// socket address, decoded only when the log is on.
func (q *queryLog) queryUDP(client *udpsock.Addr, server netip.AddrPort, msg []byte) {
	if q != nil {
		q.addRaw(false, client, server, msg)
	}
}

func (q *queryLog) responseUDP(client *udpsock.Addr, server netip.AddrPort, msg []byte) {
	if q != nil && q.responses && len(msg) > 0 {
		q.addRaw(true, client, server, msg)
	}
}

// addRaw keeps the address decoding out of the hooks, so they inline.
func (q *queryLog) addRaw(resp bool, client *udpsock.Addr, server netip.AddrPort, msg []byte) {
	q.add(resp, dnswire.UDP, client.AddrPort(), server, msg)
}

func (q *queryLog) add(resp bool, tr dnswire.Transport, client, server netip.AddrPort, msg []byte) {
	if !q.sampled(msg, client) {
		return
	}
	if len(msg) > maxLoggedMsg {
		q.dropBig.Add(1)
		return
	}
	e, pos, ok := q.q.reserve()
	if !ok {
		q.dropFull.Add(1)
		return
	}
	e.resp, e.tr, e.client, e.server = resp, tr, client, server
	e.at = time.Now().UnixNano()
	e.msg = append(e.msg[:0], msg...)
	q.q.publish(pos)
}

// QueryLogStats are the query log's counters.
type QueryLogStats struct {
	Enabled   bool
	Connected bool
	Frames    uint64
	// Dropped by reason: queue_full, too_big, no_reader (or write error).
	QueueFull, TooBig, NoReader uint64
}

// QueryLogStats reports the query log's counters; Enabled is false when
// the config has no query_log.
func (p *Proxy) QueryLogStats() QueryLogStats {
	q := p.qlog
	if q == nil {
		return QueryLogStats{}
	}
	return QueryLogStats{
		Enabled: true, Connected: q.connected.Load(), Frames: q.frames.Load(),
		QueueFull: q.dropFull.Load(), TooBig: q.dropBig.Load(), NoReader: q.dropWrite.Load(),
	}
}

// startObservers starts the query log writer and the top aggregator. The
// returned stop drains both: messages queued before it are still written.
// A query log file that cannot be created is an error; a socket without a
// reader is not (the writer keeps trying, and counts what it drops).
func (p *Proxy) startObservers() (stop func(), err error) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	if q := p.qlog; q != nil {
		var w frameWriter
		var f *os.File
		if q.cfg.File != "" {
			if w, f, err = q.openFile(); err != nil {
				return nil, err
			}
		}
		wg.Go(func() { q.run(done, w, f) })
	}
	if t := p.top; t != nil {
		wg.Go(func() { t.run(done) })
	}
	return func() { close(done); wg.Wait() }, nil
}

// reloadObservers applies what a reload may change: the top sample rate.
// The query log's destination and queue are set up at start.
func (p *Proxy) reloadObservers(cfg *config.Config) {
	old := p.cfg.Load()
	if p.top != nil {
		p.top.sample.Store(uint32(cfg.Top.Sample))
	} else if cfg.Top.Sample > 0 {
		p.log.Warn("top.sample: turning the top tables on needs a restart")
	}
	if !sameQueryLog(old.QueryLog, cfg.QueryLog) {
		p.log.Warn("query_log changed: restart anyfront to apply it")
	}
}

// sameQueryLog compares two query_log sections, wherever they sit in the
// file.
func sameQueryLog(a, b *config.QueryLog) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Line, y.Line = 0, 0
	return x == y
}
