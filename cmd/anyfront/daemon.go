package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sync/errgroup"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy"
	"github.com/anyfront/anyfront/state"
)

// daemon wires the components together; they meet in the state store.
type daemon struct {
	log   *slog.Logger
	store *state.Store
	proxy *proxy.Proxy

	mu  sync.Mutex // serialises reloads
	cfg *config.Config
}

func newDaemon(cfg *config.Config, log *slog.Logger) (*daemon, error) {
	store, err := state.New()
	if err != nil {
		return nil, err
	}
	if err := store.ApplyConfig(cfg); err != nil {
		return nil, err
	}
	p, err := proxy.New(cfg, proxy.Deps{Store: store, Log: log.With("component", "proxy")})
	if err != nil {
		return nil, err
	}
	return &daemon{log: log, store: store, proxy: p, cfg: cfg}, nil
}

// run serves until ctx ends; SIGHUP reloads the config.
func (d *daemon) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.proxy.Run(ctx) })
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
// rejected with every error and the running config stays.
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
	d.cfg = cfg
	d.log.Info("config reloaded", "file", cfg.File)
	return nil
}
