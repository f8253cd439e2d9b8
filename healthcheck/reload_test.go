package healthcheck

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

func TestReload(t *testing.T) {
	u1 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	u2 := testlab.StartUnbound(t, testlab.UnboundOptions{})
	r1, r2 := labBackend{"r1", u1.Addr}, labBackend{"r2", u2.Addr}
	l := newLab(t, parse(t, pool("default", "", r1)))
	l.waitHealth(t, "r1", state.HealthUp, labInterval+labTimeout+slack)

	t.Run("a new backend is checked and changed settings keep counters", func(t *testing.T) {
		sent := l.status(t, "r1").ProbesSent
		l.reload(t, parse(t, pool("default", "mode: lazy", r1, r2)))
		l.waitHealth(t, "r2", state.HealthUp, labInterval+labTimeout+slack)
		s := l.status(t, "r1")
		if s.Mode != "lazy" || s.ProbesSent < sent || !s.Checked {
			t.Errorf("r1 after a settings change: %+v (had sent %d)", s, sent)
		}
		waitFor(t, labRise*labInterval+slack, func() (bool, string) {
			s := l.status(t, "r1")
			return !s.Probing, "r1 still probing in lazy mode"
		})
	})

	t.Run("a removed backend is forgotten", func(t *testing.T) {
		l.reload(t, parse(t, pool("default", "", r2)))
		if _, ok := l.c.Status("r1"); ok {
			t.Error("r1 still has a status")
		}
		l.c.mu.Lock()
		for k, b := range l.c.pending {
			if b.name == "r1" {
				t.Errorf("r1 still has a probe pending: %v", k)
			}
		}
		inQueue := false
		for _, b := range l.c.queue {
			inQueue = inQueue || b.name == "r1"
		}
		l.c.mu.Unlock()
		if inQueue {
			t.Error("r1 is still scheduled")
		}
		if got := metricLabels(t, l.c, "anyfront_healthcheck_probes_total"); strings.Contains(got, "r1") {
			t.Errorf("metrics still list r1: %s", got)
		}
	})

	t.Run("a moved backend starts afresh", func(t *testing.T) {
		before := l.status(t, "r2").ProbesSent
		l.reload(t, parse(t, pool("default", "", labBackend{"r2", u1.Addr})))
		s := l.status(t, "r2")
		if s.Address != u1.Addr || s.ProbesSent >= before && before > 1 {
			t.Errorf("r2 after moving: %+v (had sent %d)", s, before)
		}
		l.waitHealth(t, "r2", state.HealthUp, labInterval+labTimeout+slack)
	})

	t.Run("a verdict reached before the store has the backend is stored once it does", func(t *testing.T) {
		cfg := parse(t, pool("default", "", labBackend{"r2", u1.Addr}, labBackend{"r3", u2.Addr}))
		l.c.Reload(cfg) // the store does not know r3 yet
		waitFor(t, labInterval+labTimeout+slack, func() (bool, string) {
			return l.status(t, "r3").Checked, "r3 has no verdict"
		})
		if err := l.store.ApplyConfig(cfg); err != nil {
			t.Fatal(err)
		}
		l.waitHealth(t, "r3", state.HealthUp, slack)
	})
}

func TestMetrics(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	l := newLab(t, parse(t, pool("default", "", labBackend{"r1", u.Addr})))
	l.waitHealth(t, "r1", state.HealthUp, labInterval+labTimeout+slack)
	u.Kill()
	l.waitHealth(t, "r1", state.HealthDown, labFall*labInterval+labTimeout+slack)

	fams := gather(t, l.c)
	for _, tt := range []struct {
		name   string
		labels string
		min    float64
	}{
		{"anyfront_healthcheck_probes_total", "backend=r1,result=success", 1},
		{"anyfront_healthcheck_probes_total", "backend=r1,result=timeout", labFall},
		{"anyfront_healthcheck_transitions_total", "backend=r1", 1},
		{"anyfront_healthcheck_consecutive_failures", "backend=r1", labFall},
		{"anyfront_healthcheck_unexpected_answers_total", "", 0},
	} {
		t.Run(tt.name+"{"+tt.labels+"}", func(t *testing.T) {
			v, ok := value(fams, tt.name, tt.labels)
			if !ok || v < tt.min {
				t.Errorf("= %v (found %v), want at least %v", v, ok, tt.min)
			}
		})
	}
}

func gather(t *testing.T, c *Checker) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c.Collector()); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// labelText renders a series' labels as "k=v,k=v".
func labelText(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	return strings.Join(parts, ",")
}

func value(fams map[string]*dto.MetricFamily, name, labels string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if labelText(m) != labels {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func metricLabels(t *testing.T, c *Checker, name string) string {
	var out []string
	if f := gather(t, c)[name]; f != nil {
		for _, m := range f.GetMetric() {
			out = append(out, labelText(m))
		}
	}
	return strings.Join(out, " ")
}
