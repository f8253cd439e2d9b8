package ebpf

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/anyfront/anyfront/config"
)

// Bounds matching xdp.h (TestMapBoundsMatchGo checks).
const (
	// maxVIPs: far more service addresses than one node announces, in a
	// small hash.
	maxVIPs = 256
	// maxBuckets is the rate limiter's LRU size: 64k source prefixes at
	// about 100 bytes each (some 6 MB, preallocated). A prefix evicted by
	// a flood from spoofed sources starts again with a full bucket; with
	// 64k entries a prefix that sends steadily is rarely the least recent.
	maxBuckets = 64 * 1024
)

// Address families as the program stores them.
const (
	familyV4 = 4
	familyV6 = 6
)

// objects is the loaded program and maps, with a mirror of what this
// process wrote to them so that updates touch only what changed.
type objects struct {
	xdpObjects
	vips     map[xdpVipKey]bool
	blocks   map[netip.Prefix]bool
	prefixes [2]int // v4_prefix, v6_prefix the buckets were keyed with
	answerMirror
	cpus int // possible CPUs: the length of a per-CPU value
}

// permissionHint is added to errors that mean missing privileges.
const permissionHint = "needs root, or CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON"

// loadObjects loads the committed program and its maps into the kernel.
func loadObjects() (*objects, error) {
	cpus, err := cebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("xdp: count CPUs: %w", err)
	}
	o := &objects{vips: map[xdpVipKey]bool{}, blocks: map[netip.Prefix]bool{}, answerMirror: newAnswerMirror(), cpus: cpus}
	if err := loadXdpObjects(&o.xdpObjects, nil); err != nil {
		var ve *cebpf.VerifierError
		switch {
		case errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission):
			return nil, fmt.Errorf("xdp: load program (%s): %w", permissionHint, err)
		case errors.As(err, &ve):
			return nil, fmt.Errorf("xdp: the kernel's verifier refused the program: %w", err)
		}
		return nil, fmt.Errorf("xdp: load program: %w", err)
	}
	return o, nil
}

// vipKey is the program's key for one VIP.
func vipKey(ap netip.AddrPort) xdpVipKey {
	a := ap.Addr().Unmap()
	k := xdpVipKey{Port: [2]uint8{uint8(ap.Port() >> 8), uint8(ap.Port())}}
	if a.Is4() {
		b := a.As4()
		copy(k.Addr[:], b[:])
		k.Family = familyV4
	} else {
		k.Addr = a.As16()
		k.Family = familyV6
	}
	return k
}

// syncVIPs makes the vips map hold exactly the given addresses.
func (o *objects) syncVIPs(vips []netip.AddrPort) error {
	want := map[xdpVipKey]bool{}
	for _, v := range vips {
		want[vipKey(v)] = true
	}
	for k := range want {
		if !o.vips[k] {
			if err := o.Vips.Put(k, uint8(1)); err != nil {
				return fmt.Errorf("xdp: add vip: %w", err)
			}
			o.vips[k] = true
		}
	}
	for k := range o.vips {
		if !want[k] {
			if err := o.Vips.Delete(k); err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
				return fmt.Errorf("xdp: remove vip: %w", err)
			}
			delete(o.vips, k)
		}
	}
	return nil
}

// putBlock and delBlock keep one prefix in or out of its trie.
func (o *objects) putBlock(p netip.Prefix) error {
	if o.blocks[p] {
		return nil
	}
	var err error
	if p.Addr().Is4() {
		err = o.BlockV4.Put(xdpLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()}, uint8(1))
	} else {
		err = o.BlockV6.Put(xdpLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()}, uint8(1))
	}
	if err != nil {
		return fmt.Errorf("xdp: block %v: %w", p, err)
	}
	o.blocks[p] = true
	return nil
}

func (o *objects) delBlock(p netip.Prefix) error {
	if !o.blocks[p] {
		return nil
	}
	var err error
	if p.Addr().Is4() {
		err = o.BlockV4.Delete(xdpLpmV4Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As4()})
	} else {
		err = o.BlockV6.Delete(xdpLpmV6Key{Prefixlen: uint32(p.Bits()), Addr: p.Addr().As16()})
	}
	if err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
		return fmt.Errorf("xdp: unblock %v: %w", p, err)
	}
	delete(o.blocks, p)
	return nil
}

// syncBlocks makes the tries hold exactly want. Additions go first so that
// a prefix moving from a /24 to a /16 is never briefly unblocked.
func (o *objects) syncBlocks(want map[netip.Prefix]bool) error {
	for p := range want {
		if err := o.putBlock(p); err != nil {
			return err
		}
	}
	for p := range o.blocks {
		if !want[p] {
			if err := o.delBlock(p); err != nil {
				return err
			}
		}
	}
	return nil
}

// settingsFor turns the rate-limit config into the program's settings.
// The bucket is GCRA: one query costs interval_ns and a prefix may run
// burst_ns ahead of the clock.
func settingsFor(rl config.RateLimit) xdpSettings {
	var s xdpSettings
	if rl.QPS > 0 {
		s.IntervalNs = uint64(1e9 / rl.QPS)
		if s.IntervalNs == 0 {
			s.IntervalNs = 1
		}
		burst := uint64(max(rl.Burst, 1))
		s.BurstNs = s.IntervalNs * burst
		if s.BurstNs/burst != s.IntervalNs { // overflow: as good as unlimited
			s.BurstNs = math.MaxUint64
		}
	}
	if rl.TCSlip > 0 {
		s.TcSlip = uint32(min(rl.TCSlip, math.MaxUint32))
	}
	copy(s.V4Mask[:], mask(rl.V4Prefix, 4))
	copy(s.V6Mask[:], mask(rl.V6Prefix, 16))
	return s
}

// mask returns a network mask of the given length in n bytes.
func mask(bits, n int) []byte {
	m := make([]byte, n)
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

// setRateLimit writes the settings; when the prefix lengths change the
// buckets are emptied, since their keys no longer mean the same prefixes.
func (o *objects) setRateLimit(rl config.RateLimit) error {
	if err := o.Config.Put(uint32(0), settingsFor(rl)); err != nil {
		return fmt.Errorf("xdp: write rate limit settings: %w", err)
	}
	p := [2]int{rl.V4Prefix, rl.V6Prefix}
	if p == o.prefixes {
		return nil
	}
	o.prefixes = p
	var k xdpBucketKey
	var keys []xdpBucketKey
	it := o.Buckets.Iterate()
	var v xdpBucketVal
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdp: list rate-limit buckets: %w", err)
	}
	for _, k := range keys {
		if err := o.Buckets.Delete(k); err != nil && !errors.Is(err, cebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: flush rate-limit buckets: %w", err)
		}
	}
	return nil
}

// counts sums the per-CPU verdict counters.
func (o *objects) counts() ([verdictCount]uint64, error) {
	var out [verdictCount]uint64
	var per []uint64
	for v := range out {
		if err := o.Counters.Lookup(uint32(v), &per); err != nil {
			return out, fmt.Errorf("xdp: read counters: %w", err)
		}
		for _, n := range per {
			out[v] += n
		}
	}
	return out, nil
}
