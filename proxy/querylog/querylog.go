// Package querylog is the opt-in dnstap query log: it takes the queries
// and answers the front ends hand it, samples them, queues them in a
// bounded ring and writes them as dnstap frames (Frame Streams) to a file
// or a Unix socket, with its counters and their Prometheus metrics.
//
// A nil *Log is off: every method returns at its first line, so the front
// ends call it unconditionally. Query and Response run for every packet:
// they never block, never allocate once the ring's slots have grown, and
// a full ring drops and counts. All the encoding happens on the Writer's
// goroutine, which the caller starts and joins (Writer.Run).
//
// It knows no listener and no proxy: it never imports proxy, and it sees
// only the bytes, addresses and transport it is given.
package querylog

import (
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/ring"
)

// MaxMsg bounds the message one queue slot holds: every UDP query fits
// and nearly every answer does. Larger ones (big answers over TCP) are
// counted as dropped, so the queue's memory stays within queue × MaxMsg
// whatever the traffic.
const MaxMsg = 4096

// slotStart is a slot's buffer before traffic grows it: a typical answer
// fits, so most slots never grow.
const slotStart = 512

// Log is the query log. The query path copies sampled messages into a
// bounded ring (no lock, no allocation once the slots have grown, no
// waiting: a full ring drops and counts); one writer goroutine turns them
// into dnstap frames.
type Log struct {
	cfg       *config.QueryLog
	sample    uint32
	responses bool
	q         *ring.Ring[entry]
	identity  []byte
	log       *slog.Logger

	frames    atomic.Uint64 // written to the file or socket
	dropFull  atomic.Uint64 // the ring was full
	dropBig   atomic.Uint64 // larger than MaxMsg
	dropWrite atomic.Uint64 // no reader connected, or the write failed
	connected atomic.Bool   // the socket has a reader (files: always)
}

// entry is one message waiting for the writer.
type entry struct {
	resp   bool
	tr     dnswire.Transport
	client netip.AddrPort
	server netip.AddrPort // the address the query came to; zero when unknown
	at     int64          // wall clock, Unix nanoseconds
	msg    []byte
}

// New prepares the query log c describes; it is nil (off) when c is nil.
// It opens nothing: Open does.
func New(c *config.QueryLog, log *slog.Logger) *Log {
	if c == nil {
		return nil
	}
	id := c.Identity
	if id == "" {
		id, _ = os.Hostname()
	}
	return &Log{
		cfg: c, sample: uint32(max(c.Sample, 1)), responses: c.Responses, identity: []byte(id), log: log,
		q: ring.New(c.Queue, func(e *entry) { e.msg = make([]byte, 0, slotStart) }),
	}
}

// sampled picks one message in sample by a hash of the client's port and
// the DNS ID, both of which its response carries too: a sampled query's
// response is logged with it, with no state kept between the two.
func (q *Log) sampled(msg []byte, client netip.AddrPort) bool {
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

// Query logs a query from client that came over tr to server (zero when
// the listener's address is not at hand). Nil-safe: a nil log is off, and
// this much inlines into the caller, so off costs one comparison.
func (q *Log) Query(tr dnswire.Transport, client, server netip.AddrPort, msg []byte) {
	if q != nil {
		q.add(false, tr, client, server, msg)
	}
}

// Response logs the answer sent to client, when responses are logged and
// its query was sampled. Nil-safe.
func (q *Log) Response(tr dnswire.Transport, client, server netip.AddrPort, msg []byte) {
	if q != nil && q.responses && len(msg) > 0 {
		q.add(true, tr, client, server, msg)
	}
}

// Responses says whether answers are logged: false when the log is off. A
// caller that must decode the client's address first asks before doing so.
func (q *Log) Responses() bool { return q != nil && q.responses }

func (q *Log) add(resp bool, tr dnswire.Transport, client, server netip.AddrPort, msg []byte) {
	if !q.sampled(msg, client) {
		return
	}
	if len(msg) > MaxMsg {
		q.dropBig.Add(1)
		return
	}
	e, pos, ok := q.q.Reserve()
	if !ok {
		q.dropFull.Add(1)
		return
	}
	e.resp, e.tr, e.client, e.server = resp, tr, client, server
	e.at = time.Now().UnixNano()
	e.msg = append(e.msg[:0], msg...)
	q.q.Publish(pos)
}

// Stats are the query log's counters.
type Stats struct {
	// Enabled is false when the config has no query_log; everything else
	// is then zero.
	Enabled bool
	// Connected is true while the log has somewhere to write: a file, or
	// a socket with a reader.
	Connected bool
	// Frames counts the dnstap frames written.
	Frames uint64
	// Dropped by reason: queue_full, too_big, no_reader (or write error).
	QueueFull, TooBig, NoReader uint64
}

// Stats reports the log's counters. Nil-safe: a nil log reports zero.
func (q *Log) Stats() Stats {
	if q == nil {
		return Stats{}
	}
	return Stats{
		Enabled: true, Connected: q.connected.Load(), Frames: q.frames.Load(),
		QueueFull: q.dropFull.Load(), TooBig: q.dropBig.Load(), NoReader: q.dropWrite.Load(),
	}
}

// Same says whether two query_log sections configure the same log,
// wherever they sit in the file: a reload that changes it needs a restart.
func Same(a, b *config.QueryLog) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	x.Line, y.Line = 0, 0
	return x == y
}
