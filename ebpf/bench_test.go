package ebpf

import (
	"testing"

	"github.com/anyfront/anyfront/config"
)

// BenchmarkProgram measures the program's own cost per packet, per
// verdict, inside the kernel (BPF_PROG_TEST_RUN repeats the run without
// leaving the kernel), as ns/pkt. It excludes the driver and the NIC: the
// cost of dropping in XDP against refusing in the proxy is in bench/.
func BenchmarkProgram(b *testing.B) {
	for _, c := range []struct {
		name string
		f    frame
		rl   config.RateLimit
	}{
		{"pass", q4(), config.RateLimit{}},
		{"pass IPv6", q6(), config.RateLimit{}},
		{"pass rate-limited prefix under budget", q4(), config.RateLimit{QPS: 1_000_000_000, Burst: 1_000_000_000}},
		{"blocked", from(q4(), blocked4), config.RateLimit{}},
		{"malformed", func() frame { f := q4(); f.payload = f.payload[:12]; return f }(), config.RateLimit{}},
		{"ratelimited", q4(), config.RateLimit{QPS: 1, Burst: 1}},
		{"not for a VIP", func() frame { f := q4(); f.dst = client4c; return f }(), config.RateLimit{}},
	} {
		b.Run(c.name, func(b *testing.B) {
			o := loadTest(b, testConfig(c.rl))
			in := c.f.bytes()
			_, per, err := o.AnyfrontXdp.Benchmark(in, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}
