package ebpf

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
)

func TestCanonicalPrefixes(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7/24":         "203.0.113.0/24",
		"::ffff:203.0.113.7/120": "203.0.113.0/24",
		"2001:db8:bad::1/48":     "2001:db8:bad::/48",
		"::ffff:0.0.0.0/64":      "::/64", // shorter than the mapped range: stays IPv6
	} {
		got, err := canonical(netip.MustParsePrefix(in))
		if err != nil || got.String() != want {
			t.Errorf("canonical(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := canonical(netip.Prefix{}); err == nil {
		t.Error("the zero prefix was accepted")
	}
}

func TestBlockSet(t *testing.T) {
	now := time.Unix(1000, 0)
	p := netip.MustParsePrefix
	b := newBlockSet()
	b.static = map[netip.Prefix]bool{p("203.0.113.0/24"): true}

	if err := b.addDynamic(p("198.51.100.7/32"), now.Add(time.Second), now); err != nil {
		t.Fatal(err)
	}
	if err := b.addDynamic(p("198.51.100.7/32"), now.Add(500*time.Millisecond), now); err != nil {
		t.Fatal(err)
	}
	if next, ok := b.next(); !ok || !next.Equal(now.Add(time.Second)) {
		t.Errorf("an earlier time shortened the block: next expiry %v", next)
	}
	// A dynamic block on a static prefix expires without unblocking it.
	if err := b.addDynamic(p("203.0.113.0/24"), now.Add(2*time.Second), now); err != nil {
		t.Fatal(err)
	}
	if got := len(b.all(now)); got != 2 {
		t.Errorf("all: %d prefixes, want 2", got)
	}
	later := now.Add(3 * time.Second)
	gone := b.expire(later)
	slices.SortFunc(gone, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if len(gone) != 2 {
		t.Fatalf("expired %v", gone)
	}
	if b.has(p("198.51.100.7/32"), later) || !b.has(p("203.0.113.0/24"), later) {
		t.Error("after expiry the dynamic block should be gone and the static one stay")
	}
	if _, ok := b.next(); ok {
		t.Error("no dynamic block is left, yet next has one")
	}

	// The dynamic set is bounded.
	for i := range MaxDynamicBlocks {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := b.addDynamic(netip.PrefixFrom(a, 32), later.Add(time.Minute), later); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.addDynamic(p("192.0.2.1/32"), later.Add(time.Minute), later); !errors.Is(err, ErrTooManyBlocks) {
		t.Errorf("block beyond the bound: %v, want ErrTooManyBlocks", err)
	}
}

func TestBlockBeforeRun(t *testing.T) {
	d, err := New(testConfig(config.RateLimit{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Block(netip.MustParsePrefix("198.51.100.7/32"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(d.blocks.dynamic); n != 0 {
		t.Errorf("a block that has already ended was kept (%d)", n)
	}
	if err := d.Block(netip.MustParsePrefix("::ffff:198.51.100.7/128"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if !d.blocks.has(netip.MustParsePrefix("198.51.100.7/32"), time.Now()) {
		t.Error("an IPv4-mapped block was not stored as IPv4")
	}
}

func TestUnblockKeepsStaticBlocks(t *testing.T) {
	cfg := testConfig(config.RateLimit{})
	cfg.Blocklist = []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}
	d, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, p := range []string{"198.51.100.7/32", "203.0.113.0/24"} {
		if err := d.Block(netip.MustParsePrefix(p), now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := d.Unblock(netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}
	if d.blocks.has(netip.MustParsePrefix("198.51.100.7/32"), now) {
		t.Error("a dynamic block survived Unblock")
	}
	if !d.blocks.has(netip.MustParsePrefix("203.0.113.0/24"), now) {
		t.Error("Unblock lifted a static blocklist entry")
	}
	if err := d.Unblock(netip.MustParsePrefix("192.0.2.0/24")); err != nil {
		t.Errorf("unblocking what is not blocked: %v", err)
	}
}

func TestSettingsFor(t *testing.T) {
	s := settingsFor(config.RateLimit{QPS: 1000, Burst: 50, V4Prefix: 20, V6Prefix: 57, TCSlip: 3})
	want := xdpSettings{
		IntervalNs: 1_000_000, BurstNs: 50_000_000, TcSlip: 3,
		V4Mask: [4]uint8{255, 255, 0xf0, 0},
		V6Mask: [16]uint8{255, 255, 255, 255, 255, 255, 255, 0x80},
	}
	if s != want {
		t.Errorf("settingsFor = %+v\nwant %+v", s, want)
	}
	if s := settingsFor(config.RateLimit{V4Prefix: 32, V6Prefix: 128}); s.IntervalNs != 0 || s.V4Mask != [4]uint8{255, 255, 255, 255} || s.V6Mask[15] != 255 {
		t.Errorf("qps 0 should disable the limit, masks full: %+v", s)
	}
	if s := settingsFor(config.RateLimit{QPS: 1_000_000_000, Burst: 1_000_000_000}); s.IntervalNs != 1 || s.BurstNs != 1_000_000_000 {
		t.Errorf("the fastest rate: %+v", s)
	}
}
