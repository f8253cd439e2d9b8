package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Bounds on the blocklists, matching MAX_BLOCKS in xdp.c. The kernel's LPM
// tries allocate entries as they are inserted, so the bound costs nothing
// until used.
const (
	// maxBlocksPerFamily is the size of each LPM trie (IPv4, IPv6).
	maxBlocksPerFamily = 128 * 1024
	// MaxDynamicBlocks bounds the blocks added with Block. A proxy that
	// flags more sources than this faces a flood that the per-prefix rate
	// limit, not one entry per source, has to absorb.
	MaxDynamicBlocks = 16 * 1024
	// maxStaticBlocks leaves room in each trie for every dynamic block.
	maxStaticBlocks = maxBlocksPerFamily - MaxDynamicBlocks
)

// ErrTooManyBlocks is returned by Block when MaxDynamicBlocks unexpired
// blocks are in place already.
var ErrTooManyBlocks = errors.New("xdp: too many dynamic blocks")

// blockSet is the desired content of the blocklist tries: the configured
// prefixes plus the dynamic ones until they expire. Expiry is enforced by
// deleting entries rather than by a time in the kernel's value, because an
// expired longest match would hide a shorter prefix that is still blocked.
type blockSet struct {
	static  map[netip.Prefix]bool
	dynamic map[netip.Prefix]time.Time
}

func newBlockSet() *blockSet {
	return &blockSet{static: map[netip.Prefix]bool{}, dynamic: map[netip.Prefix]time.Time{}}
}

// canonical masks p and turns IPv4-mapped IPv6 prefixes into IPv4 ones,
// which is how the program sees those sources.
func canonical(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("xdp: invalid prefix %v", p)
	}
	a := p.Addr().WithZone("")
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked(), nil
	}
	return netip.PrefixFrom(a, p.Bits()).Masked(), nil
}

// staticPrefixes validates and canonicalises a configured blocklist.
func staticPrefixes(list []netip.Prefix) (map[netip.Prefix]bool, error) {
	out := make(map[netip.Prefix]bool, len(list))
	var n4, n6 int
	for _, p := range list {
		c, err := canonical(p)
		if err != nil {
			return nil, err
		}
		if !out[c] {
			if c.Addr().Is4() {
				n4++
			} else {
				n6++
			}
		}
		out[c] = true
	}
	if n4 > maxStaticBlocks || n6 > maxStaticBlocks {
		return nil, fmt.Errorf("xdp: blocklist has %d IPv4 and %d IPv6 prefixes; at most %d of each fit", n4, n6, maxStaticBlocks)
	}
	return out, nil
}

// has says whether p should be in the tries at time now.
func (b *blockSet) has(p netip.Prefix, now time.Time) bool {
	if b.static[p] {
		return true
	}
	until, ok := b.dynamic[p]
	return ok && until.After(now)
}

// addDynamic blocks p until the given time (a later time for a prefix
// already blocked extends it). It reports ErrTooManyBlocks when the
// dynamic set is full of unexpired blocks.
func (b *blockSet) addDynamic(p netip.Prefix, until, now time.Time) error {
	if old, ok := b.dynamic[p]; ok {
		if until.After(old) {
			b.dynamic[p] = until
		}
		return nil
	}
	if len(b.dynamic) >= MaxDynamicBlocks {
		return fmt.Errorf("%w (%d); not blocking %v", ErrTooManyBlocks, MaxDynamicBlocks, p)
	}
	b.dynamic[p] = until
	return nil
}

// expire forgets the dynamic blocks that have ended by now and returns
// them; the caller deletes those that are not also static from the tries.
func (b *blockSet) expire(now time.Time) []netip.Prefix {
	var gone []netip.Prefix
	for p, until := range b.dynamic {
		if !until.After(now) {
			delete(b.dynamic, p)
			gone = append(gone, p)
		}
	}
	return gone
}

// next returns when the earliest dynamic block ends, or false if none.
func (b *blockSet) next() (time.Time, bool) {
	var first time.Time
	for _, until := range b.dynamic {
		if first.IsZero() || until.Before(first) {
			first = until
		}
	}
	return first, !first.IsZero()
}

// all returns every prefix that should be in the tries at time now.
func (b *blockSet) all(now time.Time) map[netip.Prefix]bool {
	out := make(map[netip.Prefix]bool, len(b.static)+len(b.dynamic))
	for p := range b.static {
		out[p] = true
	}
	for p, until := range b.dynamic {
		if until.After(now) {
			out[p] = true
		}
	}
	return out
}
