package bgp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// loopState is what the run loop knows between iterations. Only the loop
// goroutine touches it.
type loopState struct {
	log      *slog.Logger
	cfg      *config.BGP
	order    []netip.Prefix // config order, for stable output
	prefixes map[netip.Prefix]*prefixState

	drainStart time.Time // zero: not draining
	drained    bool      // the drain grace is over (until undrain)
	setErr     error     // the last Set's error, for the status
	waiters    []chan struct{}
}

// prefixState is one announcement's state.
type prefixState struct {
	cfg    config.Announce
	health debounce
	reason string // why it is (not) wanted, for the status

	inRIB bool // the speaker holds path (the last Set succeeded with it)
	path  Path
	since time.Time // when inRIB or path last changed
}

func newLoopState(cfg *config.BGP, log *slog.Logger) *loopState {
	st := &loopState{log: log, prefixes: map[netip.Prefix]*prefixState{}}
	st.setConfig(cfg)
	return st
}

// setConfig switches to cfg and returns the prefixes that are gone (the
// next Set withdraws them).
func (st *loopState) setConfig(cfg *config.BGP) (gone []netip.Prefix) {
	st.cfg = cfg
	keep := map[netip.Prefix]bool{}
	st.order = st.order[:0]
	for _, a := range cfg.Announce {
		keep[a.Prefix] = true
		st.order = append(st.order, a.Prefix)
		if ps, ok := st.prefixes[a.Prefix]; ok {
			ps.cfg = a // a new min_healthy is judged through the same hysteresis
			continue
		}
		st.prefixes[a.Prefix] = &prefixState{cfg: a, reason: "starting"}
	}
	for p, ps := range st.prefixes {
		switch {
		case keep[p]:
		case ps.inRIB:
			ps.reason = "removed from the config" // withdrawn by the next Set
		default:
			delete(st.prefixes, p)
			gone = append(gone, p)
		}
	}
	return gone
}

// evaluate decides every prefix at now and returns the paths to announce
// and when to look again (zero: only on a state change).
func (st *loopState) evaluate(now time.Time, backends []*state.Backend, node state.Node, shutdown, force bool, peersUp int) ([]Path, time.Time) {
	stopping := node.ShuttingDown || shutdown
	draining := node.Drained || stopping
	var wake time.Time
	switch {
	case !draining:
		if !st.drainStart.IsZero() {
			st.log.Info("bgp node undrained: announcing plainly again")
		}
		st.drainStart, st.drained = time.Time{}, false
	case st.drainStart.IsZero():
		st.drainStart = now
		st.log.Info("bgp drain started", "community", GracefulShutdown, "grace", st.cfg.Drain.Grace, "shutting_down", stopping)
	}
	if draining && !st.drained {
		due := st.drainStart.Add(st.cfg.Drain.Grace)
		switch {
		case force, peersUp == 0, !now.Before(due):
			// With no session up nobody is listening to the drain: the
			// grace would only delay a shutdown.
			st.drained = true
			st.log.Info("bgp drain grace over: withdrawing", "forced", force, "sessions_up", peersUp)
		default:
			wake = due
		}
	}

	var paths []Path
	for _, prefix := range st.order {
		ps, ok := st.prefixes[prefix]
		if !ok {
			continue
		}
		v := judge(ps.cfg, backends)
		wake = earliest(wake, ps.health.observe(v, now, st.cfg.WithdrawAfter))
		p, want, reason := st.decide(ps, v, node, draining, stopping)
		ps.reason = reason
		if want {
			paths = append(paths, p)
		}
	}
	return paths, wake
}

// decide is the announce rule for one prefix, in priority order.
func (st *loopState) decide(ps *prefixState, v poolVerdict, node state.Node, draining, stopping bool) (Path, bool, string) {
	base := announcePath(ps.cfg)
	hold := st.cfg.WithdrawAfter
	switch {
	case !node.Serving:
		return Path{}, false, "node not serving: the proxy has no open listeners"
	case !ps.health.known:
		return Path{}, false, "waiting for the first health check of every backend"
	case !ps.health.healthy && v.OK():
		return Path{}, false, fmt.Sprintf("pool recovered (%s) since %s; announcing after withdraw_after %s", v, stamp(ps.health.since), hold)
	case !ps.health.healthy:
		return Path{}, false, "pool below minimum: " + v.String()
	case draining && st.drained && stopping:
		return Path{}, false, "shutting down"
	case draining && st.drained:
		return Path{}, false, "drained"
	case draining && !ps.inRIB:
		return Path{}, false, "drained: a draining node announces nothing new"
	case draining:
		return st.drainPath(base), true, fmt.Sprintf("draining: announced with %s until %s, then withdrawn", GracefulShutdown, stamp(st.drainStart.Add(st.cfg.Drain.Grace)))
	case !v.OK():
		return base, true, fmt.Sprintf("pool below minimum (%s) since %s; withdrawing after withdraw_after %s", v, stamp(ps.health.since), hold)
	}
	return base, true, "pool healthy: " + v.String()
}

// stamp writes times in reasons with milliseconds: grace and hold times
// are often below a second in labs.
func stamp(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z07:00") }

// announcePath is the plain announcement of a.
func announcePath(a config.Announce) Path {
	p := Path{Prefix: a.Prefix, NextHop: a.NextHop, MED: a.MED, Prepend: a.Prepend}
	for _, c := range a.Communities {
		p = p.withCommunity(c)
	}
	return p
}

// drainPath is p as announced during a drain: GRACEFUL_SHUTDOWN (always,
// whatever drain.community says, so RFC 8326 routers act on it), the
// configured drain community, and the drain extras for routers that ignore
// communities.
func (st *loopState) drainPath(p Path) Path {
	d := st.cfg.Drain
	p = p.withCommunity(GracefulShutdown).withCommunity(d.Community)
	p.Prepend += d.Prepend
	if d.MED != 0 {
		p.MED = d.MED
	}
	return p
}

// applied records the outcome of a Set with paths and returns when to try
// again after a failure (zero on success).
func (st *loopState) applied(now time.Time, paths []Path, err error, m *metrics) time.Time {
	if err != nil {
		if st.setErr == nil || st.setErr.Error() != err.Error() {
			st.log.Error("bgp: announce/withdraw failed; retrying", "err", err, "in", setRetry)
		}
		st.setErr = err
		return now.Add(setRetry)
	}
	st.setErr = nil
	want := make(map[netip.Prefix]Path, len(paths))
	for _, p := range paths {
		want[p.Prefix] = p
	}
	for prefix, ps := range st.prefixes {
		p, in := want[prefix]
		switch {
		case in:
			if !ps.inRIB {
				// In the speaker's RIB, a route reaches only the established
				// sessions: the log says so, and GET /api/v1/bgp tells
				// whether any peer heard it.
				st.log.Info("bgp prefix advertised to the speaker (sent to every established peer)", "prefix", prefix, "reason", ps.reason, "path", p.String())
				m.prefixTransition(prefix, true)
			} else if !p.Equal(ps.path) {
				st.log.Info("bgp prefix re-advertised to the speaker", "prefix", prefix, "reason", ps.reason, "path", p.String())
			} else {
				continue
			}
		case ps.inRIB:
			st.log.Info("bgp prefix withdrawn from the speaker", "prefix", prefix, "reason", ps.reason, "path", ps.path.String())
			m.prefixTransition(prefix, false)
		default:
			continue
		}
		ps.inRIB, ps.path, ps.since = in, p, now
	}
	for prefix, ps := range st.prefixes {
		if !ps.inRIB && !slices.Contains(st.order, prefix) {
			delete(st.prefixes, prefix) // removed by a reload, now withdrawn
			m.forgetPrefix(prefix)
		}
	}
	return time.Time{}
}

// nothingAnnounced reports whether the speaker holds no path.
func (st *loopState) nothingAnnounced() bool {
	for _, ps := range st.prefixes {
		if ps.inRIB {
			return false
		}
	}
	return st.setErr == nil
}

// views is the loop's state for Status and the metrics.
func (st *loopState) views() []prefixView {
	out := make([]prefixView, 0, len(st.order))
	for _, prefix := range st.order {
		ps := st.prefixes[prefix]
		reason := ps.reason
		if st.setErr != nil {
			reason = "announce/withdraw failed (retrying): " + st.setErr.Error()
		}
		path := ps.path
		if !ps.inRIB {
			path = announcePath(ps.cfg)
		}
		out = append(out, prefixView{Prefix: prefix, InRIB: ps.inRIB, Path: path, Reason: reason, Since: ps.since})
	}
	return out
}
