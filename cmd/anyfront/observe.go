package main

import (
	"flag"
	"io"
	"log/slog"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy"
	"github.com/anyfront/anyfront/proxy/top"
)

// logLevel is the daemon's log level: the config's log.level, applied at
// start and on every reload, unless -log-level was given on the command
// line, which then wins for the life of the process (an operator who asked
// for debug while chasing a problem keeps it across reloads).
type logLevel struct {
	v        slog.LevelVar
	override bool
}

// newLogLevel reads the -log-level flag; a flag left out defers to the
// config.
func newLogLevel(fs *flag.FlagSet, flagValue string) (*logLevel, error) {
	l := &logLevel{}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "log-level" {
			l.override = true
		}
	})
	if !l.override {
		return l, nil
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(flagValue)); err != nil {
		return nil, err
	}
	l.v.Set(lv)
	return l, nil
}

// apply sets the config's level, unless the flag overrides it.
func (l *logLevel) apply(c config.Log) {
	if !l.override {
		l.v.Set(c.Level)
	}
}

// newLogger writes to w in the config's format at l's level, which changes
// under it on reload.
func newLogger(w io.Writer, c config.Log, l *logLevel) *slog.Logger {
	l.apply(c)
	opts := &slog.HandlerOptions{Level: &l.v}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// applyLog applies a reloaded log section: the level at once, the format
// only at the next start (the handler is fixed when the process starts).
func (d *daemon) applyLog(old, cfg config.Log) {
	if d.level == nil {
		return
	}
	d.level.apply(cfg)
	if old.Format != cfg.Format {
		d.log.Warn("log.format changed: restart anyfront to apply it", "running", old.Format, "configured", cfg.Format)
	}
}

// topLists serves the proxy's top clients and names to the admin API.
type topLists struct{ p *proxy.Proxy }

// Top is GET /api/v1/top's list, n entries of each at most.
func (t topLists) Top(n int) top.List { return t.p.Top(n) }
