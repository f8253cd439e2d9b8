package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/anyfront/anyfront/admin"
	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/ebpf"
	"github.com/anyfront/anyfront/proxy"
	"github.com/anyfront/anyfront/state"
)

// daemon wires the components together; they meet in the state store and
// through the small interfaces each one declares.
type daemon struct {
	log   *slog.Logger
	store *state.Store
	proxy *proxy.Proxy
	admin *admin.Server
	xdp   *ebpf.Dataplane // nil without an xdp section
	reg   *prometheus.Registry

	mu  sync.Mutex // serialises reloads
	cfg *config.Config
}

func newDaemon(cfg *config.Config, log *slog.Logger) (*daemon, error) {
	d := &daemon{log: log, cfg: cfg, reg: prometheus.NewRegistry()}
	var err error
	if d.store, err = state.New(); err != nil {
		return nil, err
	}
	if err := d.store.ApplyConfig(cfg); err != nil {
		return nil, err
	}
	d.proxy, err = proxy.New(cfg, proxy.Deps{Store: d.store, Log: log.With("component", "proxy")})
	if err != nil {
		return nil, err
	}
	d.admin, err = admin.New(cfg.Admin, admin.Deps{
		Store:    d.store,
		Live:     liveStats{d.proxy},
		Gatherer: d.reg,
		Reload:   d.reload,
		Log:      log.With("component", "admin"),
	})
	if err != nil {
		return nil, err
	}
	if cfg.XDP != nil {
		if d.xdp, err = ebpf.New(cfg.XDP, log.With("component", "xdp")); err != nil {
			return nil, err
		}
		d.reg.MustRegister(d.xdp.Collector())
	}
	d.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "anyfront"}),
		d.proxy.Collector(),
		d.admin.Collector(),
	)
	return d, nil
}

// run serves until ctx ends; SIGHUP reloads the config.
func (d *daemon) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.proxy.Run(ctx) })
	g.Go(func() error { return d.admin.Run(ctx) })
	if d.xdp != nil {
		g.Go(func() error { return d.xdp.Run(ctx) })
	}
	g.Go(func() error {
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-hup:
				_ = d.reload()
			}
		}
	})
	return g.Wait()
}

// reload reads the config file again and applies it. An invalid file is
// rejected with every error (returned as *config.Errors for the API) and the
// running config stays.
func (d *daemon) reload() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg, err := config.Load(d.cfg.File)
	if err != nil {
		d.log.Error("reload rejected: the running config stays", "file", d.cfg.File, "err", err)
		return err
	}
	// The proxy takes the config first, so the rebuild that the state
	// change triggers already sees the new ACL and timeouts.
	d.proxy.Reload(cfg)
	if err := d.store.ApplyConfig(cfg); err != nil {
		d.log.Error("reload: state", "err", err)
		return err
	}
	switch {
	case d.xdp != nil && cfg.XDP != nil:
		if err := d.xdp.Reload(cfg.XDP); err != nil {
			d.log.Error("reload: xdp: the old XDP settings stay", "err", err)
		}
	case (d.xdp != nil) != (cfg.XDP != nil):
		d.log.Warn("adding or removing the xdp section needs a restart")
	}
	if err := d.admin.Reload(cfg.Admin); err != nil {
		d.log.Error("reload: admin token: the old token stays", "err", err)
	}
	d.cfg = cfg
	d.log.Info("config reloaded", "file", cfg.File)
	return nil
}

// liveStats adapts the proxy's per-backend figures for the admin API.
type liveStats struct{ p *proxy.Proxy }

func (l liveStats) BackendLive(name string) (admin.BackendLive, bool) {
	b, ok := l.p.Backend(name)
	return admin.BackendLive{Outstanding: b.Outstanding, LatencyUS: b.LatencyUS, Queries: b.Queries}, ok
}
