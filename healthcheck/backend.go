package healthcheck

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/state"
)

// result is how one probe ended.
type result uint8

// Probe results; the metrics' result label uses their names.
const (
	resultSuccess   result = iota // answered with a healthy rcode
	resultTimeout                 // no acceptable answer in time
	resultRcode                   // answered with an rcode not in the healthy set
	resultBadAnswer               // malformed, for another question, or header-only
	resultError                   // could not be sent (no route, TCP refused, ...)
	numResults
)

var resultNames = [numResults]string{"success", "timeout", "rcode", "bad_answer", "error"}

// neverSent is sentAt before a backend's first probe: far enough in the
// past that any minimum gap has passed, far from overflow when subtracted.
const neverSent = math.MinInt64 / 4

// backend is one backend's checking state. Every field is guarded by
// Checker.mu; the observer is the only part touched without it.
type backend struct {
	name, pool string
	addr       netip.AddrPort
	addrText   string         // addr as the store writes it, for reconcile
	match      netip.AddrPort // addr without its zone, as answers come from
	scope      uint32         // the zone's interface index, or 0
	pp         bool           // probes start with a PROXY v2 LOCAL header
	set        *settings
	obs        *observer

	idx int   // position in the queue, -1 when not queued
	at  int64 // next event: probe due, or the in-flight probe's deadline

	inflight bool
	id       uint16
	seq      uint64    // identifies the current probe to a TCP prober
	due      int64     // when the current (or last) probe was due
	sentAt   int64     // when it was sent: up to a scheduler tick later
	sentWall time.Time // the same on the wall clock, as answers are stamped
	sentWith *settings // the settings it was sent with: a reload may come between
	// resent: the UDP probe went a second time, half its timeout in, so
	// that one lost datagram (a few per cent of them on a lossy path) does
	// not count as a failed check.
	resent bool

	// up is the verdict, or the optimistic default while checked is false.
	up, checked bool
	reason      string // why the verdict is what it is
	succ, fail  int    // consecutive probe results
	failKinds   uint8  // bit per result seen in the current failure streak

	// probing: lazy mode wants probes although the backend is up, because
	// live traffic failed (or no verdict yet).
	probing bool
	// triggered: live traffic asked for a probe that has not ended yet.
	// trigGap is the least time between triggered probes: it starts at
	// timeout and doubles, up to interval, while triggered probes
	// succeed, so a resolver that SERVFAILs some names is not probed
	// flat out. lastTrig is when the last trigger was taken.
	triggered bool
	trigGap   time.Duration
	lastTrig  int64

	last       result
	lastRcode  int
	lastDetail string // for bad answers and errors
	lastAt     time.Time
	lastRTT    time.Duration

	launched    uint64             // probes sent
	probes      [numResults]uint64 // probes ended, by result
	transitions uint64
}

func (b *backend) queued() bool { return b.idx >= 0 }

// wantsProbes reports whether the backend should have probes scheduled.
func (b *backend) wantsProbes() bool {
	return !b.set.lazy || !b.checked || !b.up || b.probing || b.triggered
}

// ended counts every probe that ended, whatever the result.
func (b *backend) ended() (n uint64) {
	for _, v := range b.probes {
		n += v
	}
	return n
}

// finish records a probe's result and schedules what comes next. The probe
// must be the backend's current one.
func (c *Checker) finish(b *backend, r result, rcode int, detail string, rtt time.Duration, now int64) {
	b.inflight = false
	b.probes[r]++
	b.last, b.lastRcode, b.lastDetail, b.lastAt = r, rcode, detail, time.Now()
	set := b.set
	if r == resultSuccess {
		b.lastRTT = rtt
		b.succ, b.fail, b.failKinds = b.succ+1, 0, 0
	} else {
		b.succ, b.fail = 0, b.fail+1
		b.failKinds |= 1 << r
	}

	switch {
	case r == resultSuccess && !b.checked:
		// The store starts backends up; one good probe confirms it.
		b.checked, b.reason = true, answered(b.succ)
		c.publish(b, false)
	case r == resultSuccess && !b.up && b.succ >= set.rise:
		b.up, b.reason = true, answered(b.succ)
		b.obs.reset() // failures from before the outage must not re-trigger
		c.publish(b, true)
	case r != resultSuccess && b.up && b.fail >= set.fall:
		b.up, b.checked, b.reason = false, true, b.failReason()
		c.publish(b, true)
	}
	if b.up && b.succ >= set.rise {
		b.probing = false // lazy: quiet again
	}
	if b.triggered {
		if r == resultSuccess {
			b.trigGap = min(2*b.trigGap, set.interval)
		} else {
			b.trigGap = set.timeout
		}
		b.triggered = false
		b.obs.trig.Store(false) // re-arms the observer
	}

	if !b.wantsProbes() {
		c.unschedule(b)
		return
	}
	// The next probe is due an interval after this one was due, not after
	// it was sent, so ticks' lateness does not add up and stretch the
	// interval; after a stall the backend is probed at once.
	c.schedule(b, max(b.due+int64(set.interval), now))
}

// trigger handles live traffic's request for a probe: at once, unless a
// probe is in flight (its result will do) or the last one was too recent.
func (c *Checker) trigger(b *backend, now int64) {
	b.triggered = true
	if b.set.lazy && !b.probing {
		// A new alert: it ends after rise good probes from now on,
		// not on the strength of those before the traffic failed.
		b.probing, b.succ = true, 0
	}
	if b.trigGap == 0 || time.Duration(now-b.lastTrig) > b.set.window {
		b.trigGap = b.set.timeout // a fresh incident
	}
	b.lastTrig = now
	if b.inflight {
		return
	}
	at := max(now, b.sentAt+int64(b.trigGap))
	if !b.queued() || at < b.at {
		c.schedule(b, at)
	}
}

func answered(n int) string {
	if n == 1 {
		return "1 probe answered"
	}
	return fmt.Sprintf("%d probes answered", n)
}

// failReason says why a backend went down, naming the failure when the
// whole streak failed the same way.
func (b *backend) failReason() string {
	if b.failKinds != 1<<b.last {
		return fmt.Sprintf("%d probes failed, last: %s", b.fail, b.describe())
	}
	switch b.last {
	case resultTimeout:
		if b.fail == 1 {
			return "1 probe timed out"
		}
		return fmt.Sprintf("%d probes timed out", b.fail)
	case resultRcode:
		return "rcode " + rcodeName(b.lastRcode)
	}
	return b.describe()
}

// describe says how the last probe ended.
func (b *backend) describe() string {
	switch b.last {
	case resultSuccess:
		return "answered " + rcodeName(b.lastRcode)
	case resultTimeout:
		return "timed out"
	case resultRcode:
		return "rcode " + rcodeName(b.lastRcode)
	case resultBadAnswer:
		return "bad answer: " + b.lastDetail
	}
	return "probe failed: " + b.lastDetail
}

func rcodeName(r int) string {
	if s, ok := dns.RcodeToString[r]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", r)
}

func (b *backend) health() state.Health {
	if b.up {
		return state.HealthUp
	}
	return state.HealthDown
}

// publish writes the verdict to the store; transition says it changed (as
// opposed to a first verdict confirming the optimistic up). A failed write
// is not retried here: the store watcher (reconcile) repairs it once the
// backend's row is there.
func (c *Checker) publish(b *backend, transition bool) {
	if transition {
		b.transitions++
		c.log.Info("backend "+string(b.health()), "backend", b.name, "pool", b.pool, "reason", b.reason)
	} else {
		c.log.Debug("backend confirmed up", "backend", b.name, "pool", b.pool, "reason", b.reason)
	}
	if _, err := c.store.SetHealth(b.name, b.health(), b.reason); err != nil {
		c.log.Debug("healthcheck: verdict not stored yet", "backend", b.name, "err", err)
	}
}

// reconcile runs on every store change: where the store's row for one of
// our backends lacks our verdict (the row was added or reset after we
// published, or a write failed), it writes the verdict again. Rows of other
// pools or addresses belong to a config we have not been given yet.
func (c *Checker) reconcile(_ []*state.Pool, rows []*state.Backend) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, row := range rows {
		b := c.backends[row.Name]
		if b == nil || !b.checked || row.Pool != b.pool || row.Address != b.addrText {
			continue
		}
		if !row.Checked || row.Health != b.health() {
			if _, err := c.store.SetHealth(b.name, b.health(), b.reason); err != nil {
				c.log.Warn("healthcheck: cannot store verdict", "backend", b.name, "err", err)
			}
		}
	}
}

func (b *backend) status() Status {
	s := Status{
		Backend: b.name, Pool: b.pool, Address: b.addr, Mode: b.set.mode(),
		Health: b.health(), Checked: b.checked, Probing: b.queued() || b.inflight,
		LastProbe: b.lastAt, LastRTT: b.lastRTT,
		Successes: b.succ, Failures: b.fail,
		ProbesSent: b.launched, ProbesFailed: b.ended() - b.probes[resultSuccess],
		Transitions: b.transitions,
	}
	if b.ended() > 0 {
		s.LastResult = b.describe()
	}
	return s
}
