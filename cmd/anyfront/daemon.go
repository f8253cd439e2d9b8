package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/anyfront/anyfront/admin"
	"github.com/anyfront/anyfront/bgp"
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf"
	"github.com/anyfront/anyfront/healthcheck"
	"github.com/anyfront/anyfront/proxy"
	"github.com/anyfront/anyfront/state"
)

// shutdownSlack is added to the BGP drain grace to bound the whole SIGTERM
// drain: the grace itself plus time to send the withdrawals.
const shutdownSlack = 5 * time.Second

// daemon wires the components together; they meet in the state store and
// through the small interfaces each one declares.
type daemon struct {
	log    *slog.Logger
	store  *state.Store
	proxy  *proxy.Proxy
	health *healthcheck.Checker
	admin  *admin.Server
	bgp    *bgp.Controller // nil without a bgp section
	xdp    *ebpf.Dataplane // nil without an xdp section
	reg    *prometheus.Registry
	// reloads counts reloads for /metrics.
	reloads *reloadMetrics

	mu  sync.Mutex // serialises reloads
	cfg *config.Config
	// level is the log level reloads change; nil leaves it alone.
	level *logLevel
}

func newDaemon(cfg *config.Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{log: log, cfg: cfg, reg: prometheus.NewRegistry()}
	d.reloads = newReloadMetrics(d.reg)
	var err error
	if d.store, err = state.New(); err != nil {
		return nil, err
	}
	if err := d.store.ApplyConfig(cfg); err != nil {
		return nil, err
	}
	// Operator drains from before the restart are in the store before any
	// component starts: the BGP controller's first look already sees a
	// drained node, which then never announces before it is undrained.
	if f := cfg.Node.StateFile; f != "" {
		op, err := state.ReadOperator(f)
		if err != nil {
			return nil, err
		}
		unknown, err := d.store.RestoreOperator(op)
		if err != nil {
			return nil, err
		}
		if op.NodeDrained {
			log.Warn("node starts drained (from the state file): nothing is announced until it is undrained", "file", f)
		}
		for name, a := range op.Backends {
			log.Info("backend admin state restored from the state file", "backend", name, "admin", a, "file", f)
		}
		if len(unknown) > 0 {
			log.Warn("state file names backends the config no longer has; dropped", "file", f, "backends", unknown)
		}
	}
	if d.health, err = healthcheck.New(cfg, healthcheck.Deps{Store: d.store, Log: log.With("component", "healthcheck")}); err != nil {
		return nil, err
	}
	pdeps := proxy.Deps{Store: d.store, Log: log.With("component", "proxy"), Outcomes: d.health}
	if cfg.XDP != nil {
		if d.xdp, err = ebpf.New(cfg.XDP, log.With("component", "xdp")); err != nil {
			return nil, err
		}
		// The hottest cached answers are served by XDP itself (pools
		// with cache.xdp_entries above 0), and dynamic blocks reach the
		// kernel too: blocked sources then cost nothing past the NIC.
		pdeps.Answers = d.xdp
		pdeps.Blocker = d.xdp
	}
	d.proxy, err = proxy.New(cfg, pdeps)
	if err != nil {
		return nil, err
	}
	adeps := admin.Deps{
		Store:      d.store,
		Live:       liveStats{d.proxy},
		Gatherer:   d.reg,
		Reload:     d.reload,
		PurgeCache: d.proxy.PurgeCache,
		Rules:      d.proxy,
		Top:        topLists{d.proxy},
		Blocks:     d.proxy,
		Node:       cfg.Node,
		Version:    version,
		Log:        log.With("component", "admin"),
	}
	if cfg.BGP != nil {
		if d.bgp, err = bgp.New(cfg.BGP, bgp.Deps{Store: d.store, Log: log.With("component", "bgp")}); err != nil {
			return nil, err
		}
		adeps.BGP = d.bgp
		d.reg.MustRegister(d.bgp.Collector())
	}
	if d.admin, err = admin.New(cfg.Admin, adeps); err != nil {
		return nil, err
	}
	if d.xdp != nil {
		d.reg.MustRegister(d.xdp.Collector())
	}
	d.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "anyfront"}),
		d.proxy.Collector(),
		d.health.Collector(),
		d.admin.Collector(),
	)
	return d, nil
}

// run serves until sig ends (SIGTERM or SIGINT) or a component fails. On a
// signal, BGP drains first (graceful-shutdown community, grace, withdraw)
// while queries are still answered; then the proxy stops taking queries and
// answers those in flight; BGP stops last.
func (d *daemon) run(sig context.Context) error {
	// Every socket is bound before anything serves: a second instance on
	// a taken admin or BGP port fails here, before it answers a query.
	// The proxy binds all its listeners before it serves any; BGP starts
	// only once the proxy serves.
	if err := d.admin.Listen(sig); err != nil {
		return err
	}
	if err := probeBGPPort(d.cfg.BGP); err != nil {
		return err
	}
	svc, stopSvc := context.WithCancel(context.Background())
	defer stopSvc()
	g, gctx := errgroup.WithContext(svc)
	// GOMAXPROCS is the process's to set, so it is raised here, not in
	// the proxy: a P for every UDP reader blocked in a receive.
	if want := proxy.Procs(d.cfg); runtime.GOMAXPROCS(0) < want {
		runtime.GOMAXPROCS(want)
		d.log.Debug("GOMAXPROCS raised for blocked UDP readers", "gomaxprocs", want)
	}
	g.Go(func() error { return d.proxy.Run(gctx) })
	g.Go(func() error { return d.health.Run(gctx) })
	if !d.waitServing(gctx) {
		// The proxy failed to bind (or we were stopped): the admin API
		// never served, BGP never started.
		stopSvc()
		return g.Wait()
	}
	g.Go(func() error { return d.admin.Run(gctx) })
	// SIGHUP is ours before READY=1: systemd may reload the moment it
	// hears we are up, and a SIGHUP nobody asked for kills the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	// systemd (Type=notify) starts units ordered after us only now, and
	// the operator's `systemctl start` returns only now: with the sockets
	// bound and queries answered.
	notify(d.log, sd.SdNotifyReady)
	if d.xdp != nil {
		g.Go(func() error { return d.xdp.Run(gctx) })
	}
	g.Go(func() error { d.reloadOnHUP(gctx, hup); return nil })
	if f := d.cfg.Node.StateFile; f != "" {
		g.Go(func() error { return d.store.KeepOperator(gctx, f, d.log.With("component", "state")) })
	}

	// BGP runs on a context of its own: cancelling it withdraws at once,
	// which must wait until the graceful drain is done.
	bgpCtx, stopBGP := context.WithCancel(context.Background())
	defer stopBGP()
	bgpDone := make(chan error, 1)
	if d.bgp != nil {
		go func() { bgpDone <- d.bgp.Run(bgpCtx) }()
	}

	var bgpErr error
	select {
	case <-sig.Done():
		d.log.Info("stopping", "reason", "signal")
		notify(d.log, sd.SdNotifyStopping)
		_, _ = d.store.SetShuttingDown()
		if d.bgp != nil {
			grace := d.currentConfig().BGP.Drain.Grace + shutdownSlack
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			if err := d.bgp.Shutdown(ctx); err != nil {
				d.log.Error("bgp drain", "err", err)
			}
			cancel()
		}
	case <-gctx.Done():
	case bgpErr = <-bgpDone:
		bgpDone <- bgpErr // for the wait below
	}
	stopSvc()
	err := g.Wait()
	// The proxy's final tallies: an operator (or a test) compares what
	// clients sent with what was taken in, and so tells queries that
	// arrived after the proxy stopped reading from ones it dropped.
	udpQ, tcpQ := d.proxy.Queries()
	d.log.Info("proxy stopped", "udp_queries", udpQ, "tcp_queries", tcpQ)
	stopBGP()
	if d.bgp != nil {
		if e := <-bgpDone; e != nil && !errors.Is(e, context.Canceled) {
			err = errors.Join(err, e)
		}
	}
	return err
}

// notify tells systemd (NOTIFY_SOCKET) about a state change; a no-op when
// not started by systemd with Type=notify.
func notify(log *slog.Logger, state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		log.Warn("sd_notify", "state", state, "err", err)
	}
}

// waitServing waits until the proxy has opened its listeners (it records
// that in the store) or ctx ends; it reports whether the proxy serves.
func (d *daemon) waitServing(ctx context.Context) bool {
	for {
		ws := memdb.NewWatchSet()
		if d.store.Node(ws).Serving {
			return true
		}
		if ws.WatchCtx(ctx) != nil {
			return false
		}
	}
}

// probeBGPPort binds the BGP listen port and lets it go: GoBGP opens it
// only later, after the proxy serves, and a port already taken must stop
// the start before then. (A port taken in between still fails GoBGP's own
// start, which stops the daemon.)
func probeBGPPort(cfg *config.BGP) error {
	if cfg == nil || cfg.ListenPort <= 0 {
		return nil
	}
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", cfg.ListenPort))
	if err != nil {
		return fmt.Errorf("bgp.listen_port: %w", err)
	}
	return ln.Close()
}

func (d *daemon) reloadOnHUP(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			notify(d.log, sd.SdNotifyReloading)
			_, _ = d.reload()
			notify(d.log, sd.SdNotifyReady)
		}
	}
}

func (d *daemon) currentConfig() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// liveStats adapts the proxy's per-backend figures for the admin API.
type liveStats struct{ p *proxy.Proxy }

func (l liveStats) BackendLive(name string) (admin.BackendLive, bool) {
	b, ok := l.p.Backend(name)
	return admin.BackendLive{Outstanding: b.Outstanding, LatencyUS: b.LatencyUS, Queries: b.Queries, RTOUS: b.RTO.Microseconds()}, ok
}
