package ebpf

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
)

// testLogger sends the Dataplane's logs to the test's output.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// gather returns the collector's metrics as name -> "label/values" -> value.
func gather(t *testing.T, c prometheus.Collector) map[string]map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]float64{}
	for _, mf := range mfs {
		out[mf.GetName()] = map[string]float64{}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetValue())
			}
			out[mf.GetName()][strings.Join(labels, "/")] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return out
}

// attachedMetric returns "interface/mode" from anyfront_xdp_attached, or
// "" when the series is absent.
func attachedMetric(t *testing.T, d *Dataplane) string {
	t.Helper()
	for labels := range gather(t, d.Collector())["anyfront_xdp_attached"] {
		return labels
	}
	return ""
}

func TestCollectorBeforeRun(t *testing.T) {
	d, err := New(testConfig(config.RateLimit{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := gather(t, d.Collector())
	packets := got["anyfront_xdp_packets_total"]
	for _, v := range verdictNames {
		if n, ok := packets[v]; !ok || n != 0 {
			t.Errorf("anyfront_xdp_packets_total{verdict=%q} = %v, %v; want a zero series", v, n, ok)
		}
	}
	if len(packets) != verdictCount {
		t.Errorf("series: %v", packets)
	}
	if _, ok := got["anyfront_xdp_attached"]; ok {
		t.Error("attached before Run")
	}
	if n := got["anyfront_xdp_dynamic_blocks"][""]; n != 0 {
		t.Errorf("dynamic blocks %v", n)
	}
}

func TestCollectorCountsVerdicts(t *testing.T) {
	o := loadTest(t, testConfig(config.RateLimit{}))
	d, err := New(testConfig(config.RateLimit{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	d.objs = o // as Run would, without attaching
	defer func() { d.objs = nil }()
	runFrame(t, o, q4().bytes())
	runFrame(t, o, q6().bytes())
	runFrame(t, o, from(q4(), blocked4).bytes())
	got := gather(t, d.Collector())["anyfront_xdp_packets_total"]
	if got["pass"] != 2 || got["blocked"] != 1 || got["malformed"] != 0 {
		t.Errorf("anyfront_xdp_packets_total: %v", got)
	}
}
