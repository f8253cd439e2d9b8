package policy

import "testing"

func TestLatency(t *testing.T) {
	const picks = 100000
	tests := []struct {
		name     string
		bs       []*Backend
		min, max []float64 // bounds on each backend's share of picks
	}{
		{
			"fast backend gets the clear majority, slow one still some",
			newBackends(spec{latUS: 1000}, spec{latUS: 20000}),
			[]float64{0.95, 0.001}, []float64{0.999, 0.05},
		},
		{
			"faster backends win more pairs",
			newBackends(spec{latUS: 1000}, spec{latUS: 5000}, spec{latUS: 20000}),
			[]float64{0.6, 0.3, 0.001}, []float64{0.7, 0.4, 0.02},
		},
		{
			"fast backend with a deep queue loses to an idle slow one",
			newBackends(spec{latUS: 1000, out: 50}, spec{latUS: 20000}),
			[]float64{0.001, 0.95}, []float64{0.05, 0.999},
		},
		{
			"new backend with unknown latency gets traffic to be measured",
			newBackends(spec{latUS: 5000}, spec{latUS: 0}),
			[]float64{0.001, 0.95}, []float64{0.05, 0.999},
		},
		{
			"unknown latency is not a free pass once queries are outstanding",
			newBackends(spec{latUS: 5000}, spec{latUS: 0, out: 3}),
			[]float64{0.95, 0.001}, []float64{0.999, 0.05},
		},
		{
			"all unknown spreads by outstanding",
			newBackends(spec{out: 0}, spec{out: 4}),
			[]float64{0.95, 0.001}, []float64{0.999, 0.05},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustNew(t, Latency, tt.bs)
			c := tally(t, p, len(tt.bs), picks, 0)
			for i, n := range c {
				if share := float64(n) / picks; share < tt.min[i] || share > tt.max[i] {
					t.Errorf("backend %d got %.4f of picks, want %.3f..%.3f (counts %v)", i, share, tt.min[i], tt.max[i], c)
				}
			}
		})
	}
	t.Run("queues fill in proportion to speed", func(t *testing.T) {
		// Every pick stays outstanding, so scores meet where
		// 1ms × (O_fast+1) = 20ms × (O_slow+1): about 2000 to 100.
		bs := newBackends(spec{latUS: 1000}, spec{latUS: 20000})
		p := mustNew(t, Latency, bs)
		for range 2100 {
			bs[p.Pick(0, 0)].Stats.Outstanding.Add(1)
		}
		if slow := bs[1].Stats.Outstanding.Load(); slow < 80 || slow > 130 {
			t.Errorf("slow backend has %d outstanding, want about 100", slow)
		}
	})
	t.Run("retry with the fast one skipped goes to the slow one", func(t *testing.T) {
		p := mustNew(t, Latency, newBackends(spec{latUS: 1000}, spec{latUS: 20000}, spec{latUS: 30000}))
		c := tally(t, p, 3, picks, 0b001)
		if c[1] < picks*95/100 {
			t.Errorf("second fastest got %d of %d retries, want at least 95%%", c[1], picks)
		}
	})
}
