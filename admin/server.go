// Package admin serves anyfront's HTTP admin API: backend and node drain,
// reload, cache purge, BGP status, Prometheus /metrics and the dashboard.
// It reads and writes the state store and talks to the rest of the process
// only through the small interfaces in Deps, wired by cmd/anyfront.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/bgp/bgpstatus"
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
	"github.com/anyfront/anyfront/state"
)

// Bounds on the HTTP server. The admin API is small JSON both ways, so tight
// limits cost operators nothing and keep a slow or hostile client from
// holding connections or memory.
const (
	// maxBodyBytes bounds every request body; the largest legitimate body
	// is {"weight": N}.
	maxBodyBytes = 64 << 10
	// maxHeaderBytes bounds request headers: a bearer token and a few
	// standard headers fit many times over.
	maxHeaderBytes = 16 << 10
	// readHeaderTimeout drops clients that open a connection and dawdle
	// (slowloris).
	readHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request, body included.
	readTimeout = 10 * time.Second
	// writeTimeout bounds handling plus writing the answer; a reload parses
	// and applies a config file, which takes well under this.
	writeTimeout = 30 * time.Second
	// idleTimeout closes keep-alive connections the dashboard stopped using.
	idleTimeout = 60 * time.Second
	// shutdownGrace is how long Run waits for in-flight requests when its
	// context ends, before closing connections outright.
	shutdownGrace = 5 * time.Second
	// rateInterval is how often Run samples backend query counters for qps.
	rateInterval = time.Second
)

// BackendLive is one backend's live figures from the proxy.
type BackendLive struct {
	Outstanding int64  // queries sent and not yet answered or timed out
	LatencyUS   int64  // smoothed answer latency, microseconds
	Queries     uint64 // queries sent since the backend was set up; only grows
	RTOUS       int64  // the attempt timeout its queries get now, microseconds
}

// LiveStats gives the proxy's live per-backend figures. cmd/anyfront
// satisfies it with an adapter over the proxy, so admin does not import it.
type LiveStats interface {
	// BackendLive returns the named backend's figures, false when the
	// proxy does not know the backend (yet).
	BackendLive(name string) (BackendLive, bool)
}

// BGPStatus reports the BGP speaker's peers and announcements, served as
// GET /api/v1/bgp.
type BGPStatus interface {
	Status() bgpstatus.Status
}

// Deps is what the admin server needs from the rest of the process. Only
// Store is required.
type Deps struct {
	Store *state.Store
	// Live supplies outstanding, qps and latency; nil reports zeros.
	Live LiveStats
	// Gatherer serves /metrics. When nil, /metrics serves only the admin
	// server's own Collector; otherwise the caller registers Collector()
	// in it along with every other package's collectors.
	Gatherer prometheus.Gatherer
	// Reload reloads the config file for POST /api/v1/reload. It returns a
	// *config.Errors when the new file is invalid or names a file that is
	// missing or wrong (nothing was applied), and on success the changes
	// that need a restart to apply. Nil: 501.
	Reload func() (warnings []string, err error)
	// PurgeCache removes cached answers for suffix and every name below
	// it, on label boundaries (suffix is lowercase and fully qualified,
	// "example.com."; "" means everything), and returns how many. Nil: no
	// cache is configured.
	PurgeCache func(suffix string) (int, error)
	// BGP reports BGP status; nil means BGP is not configured.
	BGP BGPStatus
	// Rules serves GET /api/v1/rules; nil lists none.
	Rules Rules
	// Blocks serves GET /api/v1/blocks and DELETE /api/v1/blocks/{prefix};
	// nil lists none.
	Blocks Blocks
	// Top serves GET /api/v1/top; nil reports the tables as off.
	Top Top
	// Node names this node in anyfront_build_info and GET /api/v1/node.
	Node config.Node
	// Version is the build's version (git describe), for the same.
	Version string
	// Log defaults to slog.Default().
	Log *slog.Logger
}

// Server is the admin HTTP server. Create it with New, serve with Run.
type Server struct {
	deps Deps
	log  *slog.Logger
	// auditLog gets one line per mutating call (audit.go).
	auditLog *slog.Logger
	listen   string
	auth     *authenticator
	// certs serves admin.tls's certificate; nil means plain HTTP.
	certs *certfile.Store
	rates *rates
	// fleet is admin.fleet_file's nodes, for the fleet page; nil: none.
	fleet []fleetMember
	// stats is GET /api/v1/stats's ring of per-second samples.
	stats *statsRing
	// rateEvery is rateInterval; a field so in-package tests can sample
	// faster without a shared package variable.
	rateEvery time.Duration
	metrics   *metrics
	handler   http.Handler

	started atomic.Bool
	// bound is the listener Listen opened ahead of Run, if it was called.
	bound  net.Listener
	ready  chan struct{} // closed once the listener is open, or Run failed to open it
	addrMu sync.Mutex
	addr   net.Addr
}

// New builds the server and reads the token file. It opens no socket and
// starts no goroutine: Run does.
func New(cfg config.Admin, deps Deps) (*Server, error) {
	if deps.Store == nil {
		return nil, errors.New("admin: Deps.Store is required")
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	s := &Server{
		deps:      deps,
		log:       deps.Log,
		auditLog:  deps.Log.With(auditLogKey, auditLogValue),
		listen:    cfg.Listen,
		rates:     newRates(),
		rateEvery: rateInterval,
		ready:     make(chan struct{}),
	}
	auth, err := newAuthenticator(cfg.TokenFile, cfg.ReadTokenFile)
	if err != nil {
		return nil, err
	}
	s.auth = auth
	if s.certs, err = newCerts(cfg.TLS, s); err != nil {
		return nil, err
	}
	if s.fleet, err = loadFleet(cfg.FleetFile); err != nil {
		return nil, err
	}
	if auth.operate.Load() == nil {
		s.log.Warn("admin.token_file is not set: every mutating admin call will be refused")
	}
	s.metrics = newMetrics(deps.Store, deps.Live, deps.Node, deps.Version)
	s.handler = s.routes()
	return s, nil
}

// Handler returns the server's HTTP handler, for tests and for embedding
// under another server. Run serves the same handler; qps is only sampled
// while Run runs, so a bare Handler reports qps 0.
func (s *Server) Handler() http.Handler { return s.handler }

// Ready is closed once Run has opened its listener (Addr is then set), or
// has failed to; tests bind port 0 and wait on it.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address Run listens on, or nil before it listens.
func (s *Server) Addr() net.Addr {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// Collector returns the admin server's own metrics: backend health and
// admin state from the store, live figures when Deps.Live is set, and API
// requests by route and code.
func (s *Server) Collector() prometheus.Collector { return s.metrics }

// Reload applies a new admin config: the token file and the TLS pair are
// read again (so a rotated token or renewed certificate takes effect),
// while a changed listen address, or TLS turned on or off, needs a restart.
// What fails to load keeps its previous value in force, and the error says
// what.
func (s *Server) Reload(cfg config.Admin) error {
	if cfg.Listen != s.listen {
		s.log.Warn("admin.listen changed: restart anyfront to apply it", "listening", s.listen, "configured", cfg.Listen)
	}
	var errs []error
	if err := s.auth.load(cfg.TokenFile, cfg.ReadTokenFile); err != nil {
		s.log.Error("admin token not reloaded: the previous token stays", "err", err)
		errs = append(errs, err)
	}
	if err := s.reloadTLS(cfg.TLS); err != nil {
		s.log.Error("admin tls certificate not reloaded: the previous one keeps serving", "err", err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Listen opens the admin listener ahead of Run, so that a daemon learns
// its port is taken before it serves a single query or announces a route.
// Run then serves on it. Without Listen, Run opens the listener itself.
func (s *Server) Listen(ctx context.Context) error {
	if s.bound != nil || s.started.Load() {
		return errors.New("admin: Listen after Listen or Run")
	}
	ln, err := s.bind(ctx)
	if err != nil {
		return err
	}
	s.bound = ln
	return nil
}

func (s *Server) bind(ctx context.Context) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.listen)
	if err != nil {
		// err reads "listen tcp ADDR: bind: ..." already.
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	return ln, nil
}

// Run listens on the configured address and serves until ctx ends, then
// shuts down, waiting at most shutdownGrace for requests in flight. It
// returns nil after a clean stop, and only once every goroutine it started
// has ended. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("admin: Run called twice")
	}
	ln := s.bound
	var err error
	if ln == nil {
		if ln, err = s.bind(ctx); err != nil {
			close(s.ready)
			return err
		}
	}
	s.addrMu.Lock()
	s.addr = ln.Addr()
	s.addrMu.Unlock()
	close(s.ready)

	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	if s.certs != nil {
		srv.TLSConfig = s.tlsConfig()
	}
	s.log.Info("admin API listening", "addr", ln.Addr().String(), "tls", s.certs != nil)

	// runCtx stops the sampler whichever way Run ends.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { s.sampleRates(runCtx) })
	if s.stats != nil {
		wg.Go(func() { s.stats.keep(runCtx) })
	}
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if s.certs != nil {
			// The files are in TLSConfig.GetCertificate already.
			serveErr <- srv.ServeTLS(ln, "", "")
			return
		}
		serveErr <- srv.Serve(ln)
	})

	select {
	case <-ctx.Done():
	case err = <-serveErr:
		// Serve failed on its own (the listener broke): nothing to drain.
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if serr := srv.Shutdown(shutCtx); serr != nil {
		// Requests outlived the grace: cut them off.
		_ = srv.Close()
	}
	if err == nil {
		err = <-serveErr
	}
	stop()
	wg.Wait()
	for _, m := range s.fleet {
		m.client.CloseIdleConnections()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("admin serve: %w", err)
}

// sampleRates samples backend query counters every rateInterval until ctx
// ends, so qps is ready whenever the API or dashboard asks.
func (s *Server) sampleRates(ctx context.Context) {
	if s.deps.Live == nil {
		return
	}
	t := time.NewTicker(s.rateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			backends, err := s.deps.Store.Backends(nil)
			if err != nil {
				continue
			}
			s.rates.sample(now, backends, s.deps.Live)
		}
	}
}
