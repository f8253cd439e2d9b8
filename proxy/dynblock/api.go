package dynblock

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/anyfront/anyfront/proxy/internal/cidrset"
)

// Status is one dynamic block, for GET /api/v1/blocks.
type Status struct {
	Prefix  string    `json:"prefix"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since"`
	Until   time.Time `json:"until"`
	Dropped uint64    `json:"dropped"` // queries dropped or refused by it
}

// List lists the blocks in force at now, soonest to expire first (an empty
// list, not nil), and forgets the expired ones.
func (d *Blocks) List(now int64) []Status {
	out := []Status{}
	for i := range d.blocks {
		sh := &d.blocks[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.until <= now {
				delete(sh.m, k)
				d.n.Add(-1)
				continue
			}
			out = append(out, Status{Prefix: k.String(), Reason: b.reason, Since: b.since.UTC(),
				Until: d.epoch.Add(time.Duration(b.until)).UTC(), Dropped: b.dropped})
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b Status) int { return a.Until.Compare(b.Until) })
	return out
}

// Unblock lifts the block on p, here and, when the Blocker can, in the
// other layer. It returns an error wrapping ErrNoBlock when p is not
// blocked, and no other: a Blocker that fails to lift it is logged and
// counted.
func (d *Blocks) Unblock(p netip.Prefix, now int64) error {
	key := cidrset.Canonical(p)
	sh := d.blockShard(key)
	sh.mu.Lock()
	b := sh.m[key]
	if b != nil {
		delete(sh.m, key)
		d.n.Add(-1)
	}
	sh.mu.Unlock()
	if b == nil || b.until <= now {
		return fmt.Errorf("%w: %s", ErrNoBlock, key)
	}
	d.log.Info("dynamic block lifted", "prefix", key)
	if d.blocker != nil {
		if u, ok := d.blocker.(Unblocker); ok {
			if err := u.Unblock(key); err != nil {
				// Lifted here; XDP drops until the block's time is up.
				d.xdpErrs.Add(1)
				d.log.Error("lift dynamic block in XDP", "prefix", key, "err", err)
			}
		}
	}
	return nil
}
