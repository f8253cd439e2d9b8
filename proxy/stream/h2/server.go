package h2

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// MediaType is the DoH message type (RFC 8484 section 6).
const MediaType = "application/dns-message"

// Defaults for the zero fields of a Config.
const (
	// DefaultPath is the URI path RFC 8484's examples use.
	DefaultPath = "/dns-query"
	// DefaultMaxStreams matches what a TCP connection may pipeline.
	DefaultMaxStreams = 100
	// DefaultMaxHeaderListSize bounds a request's headers: a GET carries
	// its query base64url-encoded in :path, and 16 KiB fits any query a
	// stub sends (an EDNS query with padding is under 1 KiB).
	DefaultMaxHeaderListSize = 16 << 10
	// DefaultMaxBody is the largest DNS message (its length is 16 bits).
	DefaultMaxBody = 65535
	// DefaultIdleTimeout closes a connection with no stream activity.
	DefaultIdleTimeout = 30 * time.Second
	// DefaultReadHeaderTimeout bounds a client that starts a request and
	// stalls before completing it.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultWriteTimeout bounds one flush to a client that stops reading.
	DefaultWriteTimeout = 10 * time.Second
)

// Config bounds the server. Zero fields take the defaults above; MaxConnAge
// and MaxRequests zero mean no bound.
type Config struct {
	// Path is the only path served; others get 404.
	Path string
	// MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS, enforced: a stream
	// beyond it is reset with REFUSED_STREAM.
	MaxStreams uint32
	// MaxHeaderListSize is SETTINGS_MAX_HEADER_LIST_SIZE; larger header
	// blocks get 431.
	MaxHeaderListSize uint32
	// MaxBody bounds a POST body and a decoded GET query (413 beyond).
	MaxBody int
	// IdleTimeout closes a connection on which no stream opened or
	// finished for that long.
	IdleTimeout time.Duration
	// ReadHeaderTimeout closes a connection whose client started a
	// request (or the connection preface) and did not complete it.
	ReadHeaderTimeout time.Duration
	// WriteTimeout bounds each write to the client.
	WriteTimeout time.Duration
	// MaxConnAge and MaxRequests end a connection gracefully: GOAWAY,
	// then close once the answers in flight are written.
	MaxConnAge  time.Duration
	MaxRequests int
}

// Handler answers DoH requests. ServeDNS runs on the connection's reading
// goroutine and must not block: it answers now or later, from any goroutine,
// by calling req.Respond or req.Fail exactly once.
type Handler interface {
	ServeDNS(req *Request)
}

// Server serves HTTP/2 DoH connections. One Server serves any number of
// connections concurrently.
type Server struct {
	cfg   Config
	h     Handler
	stats Stats
}

// ErrConfig is returned by New for a Config it cannot serve.
var ErrConfig = errors.New("h2: bad config")

// New returns a server with cfg's bounds calling h.
func New(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil handler", ErrConfig)
	}
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.Path[0] != '/' {
		return nil, fmt.Errorf("%w: path %q does not start with /", ErrConfig, cfg.Path)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if cfg.MaxStreams == 0 {
		cfg.MaxStreams = DefaultMaxStreams
	}
	if cfg.MaxHeaderListSize == 0 {
		cfg.MaxHeaderListSize = DefaultMaxHeaderListSize
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.MaxBody < 0 || cfg.MaxBody > DefaultMaxBody {
		return nil, fmt.Errorf("%w: max body %d outside 1..%d", ErrConfig, cfg.MaxBody, DefaultMaxBody)
	}
	def(&cfg.IdleTimeout, DefaultIdleTimeout)
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&cfg.WriteTimeout, DefaultWriteTimeout)
	if cfg.MaxConnAge < 0 || cfg.MaxRequests < 0 || cfg.IdleTimeout < 0 || cfg.ReadHeaderTimeout < 0 || cfg.WriteTimeout < 0 {
		return nil, fmt.Errorf("%w: negative bound", ErrConfig)
	}
	return &Server{cfg: cfg, h: h}, nil
}

// Stats are the server's counters, for the caller's metrics.
func (s *Server) Stats() *Stats { return &s.stats }

// ServeConn serves one connection, already TLS-handshaken with ALPN "h2"
// (or any net.Conn speaking HTTP/2 with prior knowledge), until the client
// goes away, a bound or protocol error ends it, or ctx is cancelled (then
// GOAWAY, and close once the answers in flight are written). It closes c
// and returns only after its writer goroutine has stopped. The error is nil
// for an orderly end.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	s.stats.Conns.Add(1)
	cn := newConn(s, c)
	stop := context.AfterFunc(ctx, func() { cn.goAway() })
	defer stop()
	return cn.serve()
}

// Stats counts what the server saw. Fields are safe to read at any time.
type Stats struct {
	// Conns is connections served.
	Conns atomic.Uint64
	// Requests is requests received (streams opened and accepted).
	Requests atomic.Uint64
	// ProtocolErrors is connections ended with a GOAWAY error code, and
	// streams reset by us for a protocol error.
	ProtocolErrors atomic.Uint64
	// Refused is streams reset with REFUSED_STREAM (beyond MaxStreams).
	Refused atomic.Uint64
	// Resets is streams the client reset before its answer was written.
	Resets atomic.Uint64
	// Dropped is answers given for streams already gone (reset, or the
	// connection closed).
	Dropped atomic.Uint64
	// Timeouts is connections closed by the idle or read-header timeout.
	Timeouts atomic.Uint64
	// GoAways is connections ended gracefully by MaxConnAge, MaxRequests
	// or cancellation.
	GoAways atomic.Uint64
	// Floods is connections closed because the client made us queue more
	// than maxQueued control frames (ENHANCE_YOUR_CALM).
	Floods atomic.Uint64

	byStatus [len(countedStatuses) + 1]atomic.Uint64
}

// countedStatuses are the statuses counted one by one; others share the
// last slot.
var countedStatuses = [...]int{200, 400, 403, 404, 405, 413, 415, 431, 500, 502, 503, 504}

func statusSlot(code int) int {
	for i, c := range countedStatuses {
		if c == code {
			return i
		}
	}
	return len(countedStatuses)
}

// Responses is how many responses with status code were written (any code
// not in the counted list shares one count, returned for each of them).
func (s *Stats) Responses(code int) uint64 { return s.byStatus[statusSlot(code)].Load() }
