package bgp

import (
	"fmt"
	"math"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// fractionSlack absorbs float error in min_healthy_fraction × total:
// 0.3 × 10 is 3.0000000000000004, and "3 of 10" must be enough for 0.3.
const fractionSlack = 1e-9

// poolVerdict is what the backends behind one announcement say right now.
type poolVerdict struct {
	// Checked: every backend the health checks decide on has had a
	// verdict, so Up is not counting optimistic defaults.
	Checked bool
	Up      int // usable backends with a verdict (or forced up)
	Total   int // backends in the announcement's pools
	Need    int // backends that must be up to keep the route
}

// OK reports whether enough backends are up.
func (v poolVerdict) OK() bool { return v.Up >= v.Need }

func (v poolVerdict) String() string {
	return fmt.Sprintf("%d of %d backends up, need %d", v.Up, v.Total, v.Need)
}

// judge counts the backends of a's pools. A backend counts as up when it
// would get new queries (up and not drained, state.Backend.Usable) and its
// health is known: a backend forced up by an operator counts, one still on
// the optimistic default of a new backend does not, so a reload that adds
// backends never props up a failing pool.
func judge(a config.Announce, backends []*state.Backend) poolVerdict {
	v := poolVerdict{Checked: true}
	for _, b := range backends {
		if !inPools(b.Pool, a.Pools) {
			continue
		}
		v.Total++
		if b.Admin == state.AdminAuto && !b.Checked {
			v.Checked = false
			continue
		}
		if b.Usable() {
			v.Up++
		}
	}
	v.Need = a.MinHealthy
	if a.MinHealthyFraction > 0 {
		v.Need = max(v.Need, int(math.Ceil(a.MinHealthyFraction*float64(v.Total)-fractionSlack)))
	}
	return v
}

func inPools(pool string, pools []string) bool {
	for _, p := range pools {
		if p == pool {
			return true
		}
	}
	return false
}

// debounce is the withdraw_after hysteresis of one prefix: the health the
// route follows changes only after the pool has said the opposite for the
// whole hold time without interruption. A backend that flaps while the pool
// stays above its minimum never changes the verdict; a pool that dips below
// it for less than the hold time does not move the route either.
type debounce struct {
	known   bool      // a first verdict has been taken
	healthy bool      // what the route follows
	since   time.Time // when the pool started disagreeing with healthy; zero if it agrees
}

// observe takes the verdict at now and returns when the debounced health
// may flip if nothing else changes (zero when it agrees).
//
// The first complete verdict is taken at once: before it nothing is
// announced, so there is no route to protect, and waiting would only delay
// service by withdraw_after on every start.
func (d *debounce) observe(v poolVerdict, now time.Time, hold time.Duration) time.Time {
	if !d.known {
		if !v.Checked {
			return time.Time{}
		}
		d.known, d.healthy = true, v.OK()
		return time.Time{}
	}
	if v.OK() == d.healthy {
		d.since = time.Time{}
		return time.Time{}
	}
	if d.since.IsZero() {
		d.since = now
	}
	if due := d.since.Add(hold); now.Before(due) {
		return due
	}
	d.healthy, d.since = v.OK(), time.Time{}
	return time.Time{}
}
