package bgp

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	h := newHarness(t, baseConfig)
	h.allHealthy("r1", "r2", "r3")
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(h.c.Collector()); err != nil {
		t.Fatal(err)
	}
	h.store.SetNodeDrained(true)
	h.sync()
	h.advance(h.c.cfg.Drain.Grace)
	h.store.SetNodeDrained(false)
	h.sync()
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			key := mf.GetName()
			for _, l := range m.Label {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"anyfront_bgp_prefix_announced,prefix=192.0.2.53/32":                            1,
		"anyfront_bgp_prefix_transitions_total,prefix=192.0.2.53/32,to=announced":       2,
		"anyfront_bgp_prefix_transitions_total,prefix=192.0.2.53/32,to=withdrawn":       1,
		"anyfront_bgp_prefix_transitions_total,prefix=2001:db8:53::53/128,to=withdrawn": 1,
		"anyfront_bgp_peer_up,peer=198.51.100.1":                                        1,
		"anyfront_bgp_peer_transitions_total,peer=198.51.100.1":                         1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
}
