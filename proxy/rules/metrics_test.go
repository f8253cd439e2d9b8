package rules

import (
	"strconv"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

type setCollector struct{ s *Set }

func (setCollector) Describe(chan<- *prometheus.Desc)      {}
func (c setCollector) Collect(ch chan<- prometheus.Metric) { c.s.Collect(ch) }

func TestCollectHits(t *testing.T) {
	rules := compileYAML(t, `
  - {match: {qname: [a.test]}, action: {drop: true}}
  - {match: {qname: [b.test]}, action: {drop: true}}
`)
	for i := 0; i < 3; i++ {
		rules.Eval(testQuery{name: "b.test.", qtype: dns.TypeA}.facts(t), nil, 0)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(setCollector{rules})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "anyfront_proxy_rule_hits_total" {
			t.Errorf("unexpected metric %s", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["rule"]+"@"+labels["line"]] = m.GetCounter().GetValue()
		}
	}
	line := rules.At(1).line
	want := map[string]float64{"0@" + strconv.Itoa(line-1): 0, "1@" + strconv.Itoa(line): 3}
	if len(got) != 2 || got["0@"+strconv.Itoa(line-1)] != 0 || got["1@"+strconv.Itoa(line)] != 3 {
		t.Errorf("got %v, want %v", got, want)
	}
	var none *Set
	none.Collect(make(chan prometheus.Metric)) // exports nothing, does not block
}
