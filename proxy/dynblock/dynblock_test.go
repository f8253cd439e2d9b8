package dynblock

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
)

// fakeBlocker records what would go to the XDP blocklist.
type fakeBlocker struct {
	mu     sync.Mutex
	blocks map[netip.Prefix]time.Time
	lifted []netip.Prefix
}

func (f *fakeBlocker) Block(p netip.Prefix, until time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocks == nil {
		f.blocks = map[netip.Prefix]time.Time{}
	}
	f.blocks[p] = until
	return nil
}

func (f *fakeBlocker) Unblock(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lifted = append(f.lifted, p)
	return nil
}

func dynConfig(t testing.TB, section string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("d.yaml", []byte(`
pools:
  default: {backends: [{name: a, address: "127.0.0.1:1"}]}
dynamic_blocks:
`+section))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newTestDyn(t testing.TB, section string, blocker ...Blocker) *Blocks {
	var b Blocker
	if len(blocker) > 0 {
		b = blocker[0]
	}
	d := New(slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now(), b)
	d.Reconfigure(dynConfig(t, section).DynBlocks)
	return d
}

func TestSlidingWindow(t *testing.T) {
	const w = int64(10 * time.Second)
	var s slidingWindow
	start := 100 * w
	for i := 0; i < 100; i++ {
		s.add(1, start+int64(i)*w/100, w) // 100 events spread over one window
	}
	// Half way into the next window, half of the previous one still counts.
	if got := s.add(0, start+w+w/2, w); got < 49 || got > 51 {
		t.Errorf("estimate %v, want about 50", got)
	}
	if got := s.add(0, start+5*w, w); got != 0 {
		t.Errorf("after a long pause: %v", got)
	}
}

func TestDynBlockNXDOMAINFlood(t *testing.T) {
	fb := &fakeBlocker{}
	d := newTestDyn(t, `
  v4_prefix: 24
  max_blocks: 2
  detectors:
    - {kind: rcode, rcode: NXDOMAIN, rate: 10, window: 1s, block_for: 5s}
`, fb)
	flooder := netip.MustParseAddr("198.51.100.7")
	neighbour := netip.MustParseAddr("198.51.100.200") // same /24
	other := netip.MustParseAddr("192.0.2.1")
	now := int64(time.Hour)
	for i := 0; i < 9; i++ {
		d.Observe(flooder, dnswire.RcodeNXDomain, 100, now)
		d.Observe(other, dnswire.RcodeNXDomain, 100, now)
		d.Observe(other, dnswire.RcodeNoError, 100, now)
	}
	if blocked, _ := d.Admit(flooder, now); blocked {
		t.Fatal("blocked under the rate")
	}
	for i := 0; i < 5; i++ {
		d.Observe(flooder, dnswire.RcodeNXDomain, 100, now)
		d.Observe(other, dnswire.RcodeNoError, 100, now)
	}
	if blocked, refuse := d.Admit(neighbour, now); !blocked || refuse {
		t.Fatalf("the flooding /24 is not dropped: blocked %v refuse %v", blocked, refuse)
	}
	if blocked, _ := d.Admit(other, now); blocked {
		t.Fatal("a source under the rate is blocked")
	}
	want := netip.MustParsePrefix("198.51.100.0/24")
	if _, ok := fb.blocks[want]; !ok || len(fb.blocks) != 1 {
		t.Errorf("XDP got %v, want %s", fb.blocks, want)
	}
	list := d.List(now)
	if len(list) != 1 || list[0].Prefix != want.String() || list[0].Dropped != 1 {
		t.Errorf("list: %+v", list)
	}
	if d.dropped.Load() != 1 {
		t.Errorf("dropped %d", d.dropped.Load())
	}
	t.Run("the block expires by itself", func(t *testing.T) {
		later := now + int64(5*time.Second)
		if blocked, _ := d.Admit(flooder, later); blocked {
			t.Error("still blocked after block_for")
		}
		if len(d.List(later)) != 0 || d.n.Load() != 0 {
			t.Errorf("expired block still listed: %+v (n=%d)", d.List(later), d.n.Load())
		}
	})
	t.Run("the bound on blocks holds", func(t *testing.T) {
		for i := 0; i < 5; i++ {
			src := netip.AddrFrom4([4]byte{203, 0, byte(i), 1})
			for j := 0; j < 20; j++ {
				d.Observe(src, dnswire.RcodeNXDomain, 100, now)
			}
		}
		if got := len(d.List(now)); got != 2 || d.overflow.Load() != 3 {
			t.Errorf("%d blocks with max_blocks 2, overflow %d", got, d.overflow.Load())
		}
		// Expired blocks make room again.
		later := now + int64(6*time.Second)
		for j := 0; j < 20; j++ {
			d.Observe(other, dnswire.RcodeNXDomain, 100, later)
		}
		if l := d.List(later); len(l) != 1 || l[0].Prefix != "192.0.2.0/24" {
			t.Errorf("after expiry: %+v", l)
		}
	})
	t.Run("unblock lifts a block, here and in XDP", func(t *testing.T) {
		later := now + int64(6*time.Second)
		if err := d.Unblock(netip.MustParsePrefix("192.0.2.0/24"), later); err != nil {
			t.Fatal(err)
		}
		if blocked, _ := d.Admit(other, later); blocked {
			t.Error("still blocked")
		}
		if len(fb.lifted) != 1 {
			t.Errorf("XDP unblocks: %v", fb.lifted)
		}
		if err := d.Unblock(netip.MustParsePrefix("192.0.2.0/24"), later); !errors.Is(err, ErrNoBlock) {
			t.Errorf("second unblock: %v", err)
		}
	})
}

func TestDynBlockQueryRateAndBytes(t *testing.T) {
	d := newTestDyn(t, `
  action: refuse
  detectors:
    - {kind: queries, rate: 100, window: 1s, block_for: 1m}
    - {kind: response_bytes, rate: 10000, window: 1s}
`)
	now := int64(time.Hour)
	a := netip.MustParseAddr("2001:db8:1:2::1")
	sameNet := netip.MustParseAddr("2001:db8:1:2::ffff") // same /64
	for i := 0; i < 100; i++ {
		if blocked, _ := d.Admit(a, now); blocked {
			t.Fatalf("query %d blocked", i)
		}
	}
	if blocked, refuse := d.Admit(sameNet, now); !blocked || !refuse {
		t.Fatalf("query 101 from the /64: blocked %v refuse %v", blocked, refuse)
	}
	big := netip.MustParseAddr("192.0.2.9")
	d.Observe(big, 0, 9000, now)
	if blocked, _ := d.Admit(big, now); blocked {
		t.Fatal("blocked under the byte rate")
	}
	d.Observe(big, 0, 2000, now)
	if blocked, _ := d.Admit(big, now); !blocked {
		t.Fatal("not blocked over the byte rate")
	}
	if l := d.List(now); len(l) != 2 {
		t.Errorf("list %+v", l)
	}
}

func TestDynBlockReconfigure(t *testing.T) {
	d := newTestDyn(t, `
  detectors: [{kind: queries, rate: 1, window: 1s}]
`)
	c1 := d.conf.Load()
	section := dynConfig(t, `
  detectors: [{kind: queries, rate: 1000, window: 1s}]
`).DynBlocks
	d.Reconfigure(section)
	c2 := d.conf.Load()
	if c2.gen == c1.gen || c2.tab != c1.tab {
		t.Error("a reload must restart measures and keep the table")
	}
	d.Reconfigure(section)
	if d.conf.Load() != c2 {
		t.Error("the same section again must change nothing")
	}
	cfg, _ := config.Parse("n.yaml", []byte(`pools: {default: {backends: [{name: a, address: "127.0.0.1:1"}]}}`))
	d.Reconfigure(cfg.DynBlocks)
	if d.conf.Load() != nil || d.On() {
		t.Error("removing the section must turn dynamic blocks off")
	}
}

func TestDynBlockAllocs(t *testing.T) {
	d := newTestDyn(t, `
  max_tracked: 1000
  detectors:
    - {kind: queries, rate: 1e9, window: 1s}
    - {kind: rcode, rcode: NXDOMAIN, rate: 1e9, window: 1s}
`)
	addrs := make([]netip.Addr, 500)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
	}
	now := int64(time.Hour)
	run := func() {
		for _, a := range addrs {
			d.Admit(a, now)
			d.Observe(a, dnswire.RcodeNXDomain, 100, now)
		}
		now += int64(time.Millisecond)
	}
	run()
	if avg := testing.AllocsPerRun(100, run); avg != 0 {
		t.Errorf("%v allocations per 500 queries", avg)
	}
}

func BenchmarkDynBlockAdmit(b *testing.B) {
	d := newTestDyn(b, `
  detectors:
    - {kind: queries, rate: 1e9, window: 10s}
    - {kind: rcode, rcode: NXDOMAIN, rate: 1e9, window: 10s}
`)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		start := time.Now()
		for pb.Next() {
			a := netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
			now := int64(time.Since(start))
			d.Admit(a, now)
			d.Observe(a, dnswire.RcodeNXDomain, 100, now)
			i++
		}
	})
}

func TestDynBlockConcurrentBound(t *testing.T) {
	d := newTestDyn(t, `
  max_blocks: 50
  detectors: [{kind: queries, rate: 1, window: 1s, block_for: 10ms}]
`)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				a := netip.AddrFrom4([4]byte{10, byte(g), byte(i >> 8), byte(i)})
				now := int64(time.Hour) + int64(i)*int64(10*time.Microsecond)
				d.Admit(a, now)
				d.Admit(a, now)
				if n := d.n.Load(); n > 50 {
					t.Errorf("%d blocks counted, bound 50", n)
					return
				}
			}
		}()
	}
	wg.Wait()
	if got, n := len(d.List(int64(time.Hour))), d.n.Load(); int64(got) != n {
		t.Errorf("listed %d, counted %d", got, n)
	}
	if d.created.Load() <= 50 {
		t.Errorf("expired blocks did not make room: %d created", d.created.Load())
	}
}

type dynCollector struct{ d *Blocks }

func (dynCollector) Describe(chan<- *prometheus.Desc)      {}
func (c dynCollector) Collect(ch chan<- prometheus.Metric) { c.d.Collect(ch) }

func TestDynBlockMetrics(t *testing.T) {
	d := newTestDyn(t, `
  detectors: [{kind: queries, rate: 1, window: 1s}]
`)
	if !d.On() {
		t.Fatal("dynamic blocks off for a config with dynamic_blocks")
	}
	now := int64(time.Hour)
	for i := 0; i < 5; i++ {
		d.Admit(netip.MustParseAddr("192.0.2.1"), now)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(dynCollector{d})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "," + l.GetValue()
			}
			got[name] = v
		}
	}
	if got["anyfront_proxy_dynblock_blocks"] != 1 || got["anyfront_proxy_dynblock_created_total"] != 1 || got["anyfront_proxy_dynblock_queries_total,drop"] < 3 {
		t.Errorf("%v", got)
	}
	if l := d.List(now); len(l) != 1 || l[0].Reason != "over 1 queries/s" {
		t.Errorf("%+v", l)
	}
}
