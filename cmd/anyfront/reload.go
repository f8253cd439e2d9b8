package main

import (
	"reflect"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
)

// reloadMetrics count reloads the way Prometheus counts its own, so the
// same alert ("last success too old", "failures rising") fits both.
type reloadMetrics struct {
	total       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "anyfront_config_reloads_total",
			Help: "Config reloads (SIGHUP, POST /api/v1/reload) by result: success or failure.",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "anyfront_config_last_reload_success_timestamp_seconds",
			Help: "When the running config was last applied (start-up or reload), Unix seconds.",
		}),
	}
	// Both results exist from the start, so rate() and alerts see a 0.
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.lastSuccess.SetToCurrentTime()
	reg.MustRegister(m.total, m.lastSuccess)
	return m
}

// reload reads the config file again and applies it whole or not at all:
// an invalid file, or one naming a file that is missing or wrong (token,
// TLS pair, BGP password, state file), is rejected with every FILE:LINE
// reason (a *config.Errors for the API) before anything changes, and the
// running config stays. The warnings name changes that only a restart
// applies; they are logged and returned to the caller.
func (d *daemon) reload() ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cfg, err := config.Load(d.cfg.File)
	if err == nil {
		err = checkFiles(cfg)
	}
	if err != nil {
		d.reloads.total.WithLabelValues("failure").Inc()
		d.log.Error("reload rejected: the running config stays", "file", d.cfg.File, "err", err)
		return nil, err
	}
	warnings := restartWarnings(d.cfg, cfg)
	for _, w := range warnings {
		d.log.Warn("reload: "+w, "file", cfg.File)
	}
	warn := func(msg string, err error) {
		d.log.Error("reload: "+msg, "err", err)
		warnings = append(warnings, msg+": "+err.Error())
	}
	d.applyLog(d.cfg.Log, cfg.Log)
	// The proxy takes the config first, so the rebuild that the state
	// change triggers already sees the new ACL, rules and timeouts.
	d.proxy.Reload(cfg)
	if err := d.store.ApplyConfig(cfg); err != nil {
		warn("state", err)
	}
	d.health.Reload(cfg)
	if d.bgp != nil && cfg.BGP != nil {
		if err := d.bgp.Reload(cfg.BGP); err != nil {
			warn("bgp: the old BGP settings stay", err)
		}
	}
	if d.xdp != nil && cfg.XDP != nil {
		if err := d.xdp.Reload(cfg.XDP); err != nil {
			warn("xdp: the old XDP settings stay", err)
		}
	}
	// The files were checked above; this fails only if one changed since.
	if err := d.admin.Reload(cfg.Admin); err != nil {
		warn("admin: the old token or TLS certificate stays", err)
	}
	d.cfg = cfg
	d.reloads.total.WithLabelValues("success").Inc()
	d.reloads.lastSuccess.SetToCurrentTime()
	d.log.Info("config reloaded", "file", cfg.File, "warnings", len(warnings))
	return warnings, nil
}

// restartWarnings lists what changed from old to cfg that a running
// process keeps as it was until it restarts.
func restartWarnings(old, cfg *config.Config) []string {
	var w []string
	if !reflect.DeepEqual(listenKeys(old), listenKeys(cfg)) {
		w = append(w, "listen changed: restart anyfront to apply it (the old listeners keep serving)")
	}
	if old.Proxy.Workers != cfg.Proxy.Workers {
		w = append(w, "proxy.workers changed: restart anyfront to apply it")
	}
	if old.Admin.Listen != cfg.Admin.Listen {
		w = append(w, "admin.listen changed: restart anyfront to apply it (still listening on "+old.Admin.Listen+")")
	}
	if (old.Admin.TLS == nil) != (cfg.Admin.TLS == nil) {
		w = append(w, "admin.tls added or removed: restart anyfront to apply it")
	}
	if (old.BGP == nil) != (cfg.BGP == nil) {
		w = append(w, "adding or removing the bgp section needs a restart")
	}
	if (old.XDP == nil) != (cfg.XDP == nil) {
		w = append(w, "adding or removing the xdp section needs a restart")
	}
	if old.Node.StateFile != cfg.Node.StateFile {
		w = append(w, "node.state_file changed: restart anyfront to apply it (drains are still kept in "+orNone(old.Node.StateFile)+")")
	}
	if old.Node.Name != cfg.Node.Name || old.Node.Site != cfg.Node.Site {
		w = append(w, "node.name or node.site changed: restart anyfront to apply it")
	}
	return w
}

// listenKeys is what of the listeners a reload cannot change: addresses,
// protocols and their options (the TLS files are reloaded, their paths not).
func listenKeys(cfg *config.Config) []config.Listen {
	out := make([]config.Listen, len(cfg.Listen))
	for i, l := range cfg.Listen {
		l.Line = 0
		if l.TLS != nil {
			t := *l.TLS
			t.Line = 0
			l.TLS = &t
		}
		out[i] = l
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "memory only"
	}
	return s
}
