package ebpf

import (
	"fmt"
	"testing"
	"time"

	"github.com/miekg/dns"

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

// BenchmarkAnswerCache measures the program's cost per query answered from
// the answer cache (and per miss against a full-size entry set). An answer
// rewrites the frame, so each run starts from a fresh copy: one
// BPF_PROG_TEST_RUN per packet, of which only the program's own time (as
// the kernel measures it) is reported as ns/pkt.
func BenchmarkAnswerCache(b *testing.B) {
	o := loadTest(b, testConfig(config.RateLimit{}))
	exp := monoNow(b) + int64(time.Hour)
	var answers []Answer
	for i := range 4096 { // the default xdp_entries
		name := fmt.Sprintf("n%d.example.com.", i)
		answers = append(answers, answerFrom(b, response(name, dns.TypeA, 0, true, false, []dns.RR{rrA(name, 300, "192.0.2.1")}, nil), exp))
	}
	cname := answerFrom(b, response("www.example.com.", dns.TypeA, 0, true, false, []dns.RR{
		rrCNAME("www.example.com.", 60, "cdn.example.net."), rrCNAME("cdn.example.net.", 60, "edge.example.org."),
		rrA("edge.example.org.", 20, "198.51.100.80")}, nil), exp)
	publish(b, o, aclAll, append(answers, cname)...)
	for _, c := range []struct {
		name string
		f    frame
		want uint32
	}{
		{"hit A IPv4", frame{src: client4, dst: vip4, payload: plainQuery("n7.example.com.", dns.TypeA, withEDNS(1232, false))}, xdpTX},
		{"hit A IPv6", frame{src: client6, dst: vip6, payload: plainQuery("n7.example.com.", dns.TypeA, withEDNS(1232, false))}, xdpTX},
		{"hit CNAME chain IPv4", frame{src: client4, dst: vip4, payload: plainQuery("www.example.com.", dns.TypeA, withEDNS(1232, false))}, xdpTX},
		{"miss IPv4", frame{src: client4, dst: vip4, payload: plainQuery("other.example.com.", dns.TypeA, withEDNS(1232, false))}, xdpPass},
	} {
		b.Run(c.name, func(b *testing.B) {
			in := c.f.bytes()
			var total time.Duration
			for b.Loop() {
				ret, d, err := o.AnyfrontXdp.Benchmark(in, 1, nil)
				if err != nil || ret != c.want {
					b.Fatalf("%s, %v", actionNames[ret], err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/pkt")
		})
	}
	// The same miss repeated inside the kernel, as BenchmarkProgram
	// measures: the difference from "miss IPv4" is what one run per
	// system call adds (a cold start, the timer), which the hits pay too.
	b.Run("miss IPv4 repeated", func(b *testing.B) {
		in := frame{src: client4, dst: vip4, payload: plainQuery("other.example.com.", dns.TypeA, withEDNS(1232, false))}.bytes()
		_, per, err := o.AnyfrontXdp.Benchmark(in, b.N, b.ResetTimer)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	})
}

// BenchmarkSyncAnswers measures one publish of the default 4096 answers,
// every one changed (the proxy ages every TTL each second), and one
// reading of their hit counts.
func BenchmarkSyncAnswers(b *testing.B) {
	o := loadTest(b, testConfig(config.RateLimit{}))
	exp := monoNow(b) + int64(time.Hour)
	var answers []Answer
	for i := range 4096 {
		name := fmt.Sprintf("n%d.example.com.", i)
		answers = append(answers, answerFrom(b, response(name, dns.TypeA, 0, true, false, []dns.RR{rrA(name, 300, "192.0.2.1")}, nil), exp))
	}
	publish(b, o, aclAll, answers...)
	b.Run("publish 4096 changed", func(b *testing.B) {
		for b.Loop() {
			for i := range answers {
				answers[i].Expires++
			}
			set, err := buildAnswers(answers)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := o.syncAnswers(set); err != nil || n != len(answers) {
				b.Fatalf("%d written, %v", n, err)
			}
		}
	})
	b.Run("hits of 4096", func(b *testing.B) {
		for b.Loop() {
			if h, err := o.answerHits(); err != nil || len(h) != len(answers) {
				b.Fatalf("%d hits, %v", len(h), err)
			}
		}
	})
}
