package bgp

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/anyfront/anyfront/config"
)

// requests are what other goroutines ask of the run loop. They are
// collected under a mutex and taken at the top of each iteration, so asking
// never blocks on a busy loop and the loop never blocks on a caller.
type requests struct {
	reloads []*reloadReq
	// shutdown and force are sticky: once asked they hold for the rest
	// of Run, across a BGP restart.
	shutdown bool
	force    bool            // end the shutdown grace now
	waiters  []chan struct{} // closed once nothing is announced (Shutdown)
	syncs    []chan struct{} // closed after the next evaluation (tests)
}

type reloadReq struct {
	cfg   *config.BGP
	peers []peerSpec
	done  chan error // buffered: reply never blocks
}

func (r *reloadReq) reply(err error) {
	if r != nil {
		r.done <- err
	}
}

// runLoop is one Run's mailbox.
type runLoop struct {
	mu   sync.Mutex
	q    requests
	wake chan struct{} // capacity 1: coalesced "look again"
	done chan struct{} // closed when Run returns
}

func newRunLoop() *runLoop {
	return &runLoop{wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (l *runLoop) request(f func(*requests)) {
	l.mu.Lock()
	f(&l.q)
	l.mu.Unlock()
	l.poke()
}

func (l *runLoop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// take returns the pending requests, keeping the sticky flags.
func (l *runLoop) take() requests {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.q
	l.q = requests{shutdown: q.shutdown, force: q.force}
	return q
}

// idle waits d while BGP is down, answering requests: nothing is
// announced, so Shutdown is done at once, and a reload's config is already
// stored for the next start. It reports false when ctx ended.
func (l *runLoop) idle(ctx context.Context, clk clock, d time.Duration) bool {
	timerC, stop := clk.After(d)
	defer stop()
	for {
		q := l.take()
		for _, r := range q.reloads {
			r.reply(nil)
		}
		closeAll(q.waiters)
		closeAll(q.syncs)
		select {
		case <-ctx.Done():
			return false
		case <-timerC:
			return true
		case <-l.wake:
		}
	}
}

func closeAll(chs []chan struct{}) {
	for _, ch := range chs {
		close(ch)
	}
}

// serve is the controller's loop: read state, decide, Set, wait for a
// change. It returns nil when ctx ends, or the reload request whose new
// global settings need BGP restarted (the caller replies to it).
func (c *Controller) serve(ctx context.Context, l *runLoop, st *loopState, sess session) *reloadReq {
	for {
		q := l.take()
		var replies []func()
		for i, r := range q.reloads {
			if globalOf(r.cfg) != globalOf(st.cfg) {
				for _, later := range q.reloads[i+1:] {
					// Already stored in c.cfg: the restart applies the newest.
					replies = append(replies, func() { later.reply(nil) })
				}
				c.applyConfig(st, r.cfg)
				st.waiters = append(st.waiters, q.waiters...)
				closeAll(q.syncs)
				for _, f := range replies {
					f()
				}
				return r
			}
			err := sess.SetPeers(ctx, r.peers)
			c.resetPeers(r.peers)
			c.applyConfig(st, r.cfg)
			replies = append(replies, func() { r.reply(err) })
		}
		st.waiters = append(st.waiters, q.waiters...)

		ws := memdb.NewWatchSet()
		now := c.clock.Now()
		var wake time.Time
		backends, err := c.store.Backends(ws)
		node := c.store.Node(ws)
		if err != nil {
			// go-memdb only fails on a schema bug; keep the routes as
			// they are and look again soon rather than withdraw.
			c.log.Error("bgp: read state", "err", err)
			wake = now.Add(setRetry)
		} else {
			paths, w := st.evaluate(now, backends, node, q.shutdown, q.force, c.peersUp())
			wake = earliest(w, st.applied(now, paths, sess.Set(paths...), c.metrics))
		}
		c.views.publish(st.cfg, st.views())
		if q.shutdown && st.nothingAnnounced() {
			closeAll(st.waiters)
			st.waiters = nil
		}
		for _, f := range replies {
			f()
		}
		closeAll(q.syncs)

		wctx, cancel := context.WithCancel(ctx)
		storeCh := ws.WatchCh(wctx)
		var timerC <-chan time.Time
		stop := func() {}
		if !wake.IsZero() {
			timerC, stop = c.clock.After(wake.Sub(now))
		}
		select {
		case <-ctx.Done():
		case <-storeCh:
		case <-timerC:
		case <-l.wake:
		}
		cancel()
		stop()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// applyConfig switches the loop to cfg, keeping the hysteresis and
// announced state of prefixes that stay.
func (c *Controller) applyConfig(st *loopState, cfg *config.BGP) {
	for _, gone := range st.setConfig(cfg) {
		c.metrics.forgetPrefix(gone)
	}
}

// afterClose records that BGP stopped: nothing is announced any more.
func (c *Controller) afterClose(st *loopState) {
	now := c.clock.Now()
	for _, ps := range st.prefixes {
		ps.reason = "bgp stopped"
	}
	st.applied(now, nil, nil, c.metrics)
	closeAll(st.waiters)
	st.waiters = nil
}

func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}
