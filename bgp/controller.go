// Package bgp announces anyfront's anycast prefixes through an embedded
// GoBGP v3 speaker. The Controller watches state/ (backend health, node
// drain, whether the proxy serves) and decides which prefixes should be
// announced and with which attributes; the speaker, behind the desired-state
// Announcer interface, makes it so.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// Bounds of the controller's own waits.
const (
	// closeTimeout bounds withdrawing and StopBgp when Run ends: GoBGP
	// waits for each session's goroutines, which a wedged peer TCP
	// connection could hold.
	closeTimeout = 10 * time.Second
	// reopenDelay is how long Run waits before starting BGP again after
	// a reload's new router id, ASN or listen port could not be applied.
	reopenDelay = 5 * time.Second
	// setRetry is how soon a failed announce or withdraw is tried again.
	setRetry = time.Second
	// forceWait bounds Shutdown's wait for the withdrawal after its
	// context ended (the loop answers within one GoBGP call).
	forceWait = 5 * time.Second
)

// Deps are what the controller needs from the rest of the process.
type Deps struct {
	Store *state.Store
	Log   *slog.Logger
}

// Controller announces and withdraws the configured prefixes. Create it
// with New, start it with Run; Reload, Shutdown, Status and Collector are
// safe to call from any goroutine, before, during or after Run.
type Controller struct {
	store *state.Store
	log   *slog.Logger
	clock clock
	// start begins a BGP session set; tests replace it with a fake or a
	// private GoBGP server.
	start func(ctx context.Context, g globalSpec) (session, error)

	mu    sync.Mutex
	cfg   *config.BGP
	peers []peerSpec
	loop  *runLoop // non-nil while Run runs

	peerMu sync.Mutex
	peerSt map[netip.Addr]*peerStatus

	metrics *metrics
	views   viewStore
}

// New checks cfg and reads the peers' password files. It starts nothing.
func New(cfg *config.BGP, deps Deps) (*Controller, error) {
	if cfg == nil {
		return nil, errors.New("bgp: no bgp section in the config")
	}
	if deps.Store == nil {
		return nil, errors.New("bgp: Deps.Store is required")
	}
	log := deps.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	peers, err := peerSpecs(cfg)
	if err != nil {
		return nil, fmt.Errorf("bgp: %w", err)
	}
	c := &Controller{store: deps.Store, log: log, clock: realClock{}, cfg: cfg, peers: peers,
		peerSt: map[netip.Addr]*peerStatus{}, metrics: newMetrics()}
	c.start = func(ctx context.Context, g globalSpec) (session, error) {
		return startProcessSpeaker(ctx, c.log, g)
	}
	c.resetPeers(peers)
	c.views.stopped(cfg, "bgp not running")
	return c, nil
}

// Run starts BGP (the process's GoBGP server, its peers), then announces and
// withdraws as state/ changes until ctx ends. It then withdraws every
// prefix, cancels its GoBGP watchers and stops BGP before returning. Run
// returns an error when BGP cannot start; a cancelled ctx returns nil.
func (c *Controller) Run(ctx context.Context) error {
	l := newRunLoop()
	c.mu.Lock()
	if c.loop != nil {
		c.mu.Unlock()
		return errors.New("bgp: Run is already running")
	}
	c.loop = l
	cfg, peers := c.cfg, c.peers
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.loop = nil
		c.mu.Unlock()
		close(l.done)
	}()

	st := newLoopState(cfg, c.log)
	sess, cancelWatch, err := c.open(ctx, cfg, peers)
	if err != nil {
		c.views.stopped(cfg, "bgp failed to start: "+err.Error())
		return err
	}
	for {
		pending := c.serve(ctx, l, st, sess)
		cancelWatch() // first: GoBGP v3 leaks a watcher still alive at StopBgp
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		closeErr := sess.Close(closeCtx)
		cancel()
		c.afterClose(st)
		if ctx.Err() != nil {
			c.resetPeerStates()
			c.views.stopped(st.cfg, "bgp stopped")
			if closeErr != nil {
				return fmt.Errorf("bgp: stop: %w", closeErr)
			}
			return nil
		}
		// A reload changed the ASN, router id or listen port: those need
		// a new BGP instance. Keep trying until it starts or ctx ends.
		c.resetPeerStates()
		for {
			cfg, peers := c.config()
			sess, cancelWatch, err = c.open(ctx, cfg, peers)
			if err == nil {
				c.applyConfig(st, cfg) // reloads may have come in meanwhile
			} else {
				c.log.Error("bgp restart failed; retrying", "err", err, "in", reopenDelay)
				c.views.stopped(cfg, "bgp failed to start: "+err.Error())
			}
			pending.reply(err)
			pending = nil
			if err == nil {
				break
			}
			if !l.idle(ctx, c.clock, reopenDelay) {
				c.views.stopped(cfg, "bgp stopped")
				return nil
			}
		}
	}
}

// open starts a session with cfg's global settings, watches its peers and
// configures them.
func (c *Controller) open(ctx context.Context, cfg *config.BGP, peers []peerSpec) (session, context.CancelFunc, error) {
	sess, err := c.start(ctx, globalOf(cfg))
	if err != nil {
		return nil, nil, err
	}
	c.resetPeers(peers)
	watchCtx, cancelWatch := context.WithCancel(ctx)
	if err := sess.WatchPeers(watchCtx, c.onPeerEvent); err != nil {
		cancelWatch()
		return nil, nil, errors.Join(fmt.Errorf("bgp: watch peers: %w", err), sess.Close(context.WithoutCancel(ctx)))
	}
	if err := sess.SetPeers(ctx, peers); err != nil {
		cancelWatch()
		return nil, nil, errors.Join(fmt.Errorf("bgp: %w", err), sess.Close(context.WithoutCancel(ctx)))
	}
	c.log.Info("bgp started", "asn", cfg.ASN, "router_id", cfg.RouterID, "peers", len(peers))
	return sess, cancelWatch, nil
}

func (c *Controller) config() (*config.BGP, []peerSpec) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cfg, c.peers
}

func (c *Controller) currentLoop() *runLoop {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loop
}

// Reload applies a new bgp section: peers and announcements are diffed and
// only what changed is touched (a changed peer's session is re-created); a
// new ASN, router id or listen port restarts BGP. It returns once applied,
// or at once when Run is not running (Run then uses the new config).
func (c *Controller) Reload(cfg *config.BGP) error {
	if cfg == nil {
		return errors.New("bgp: reload without a bgp section; BGP cannot be turned off by a reload")
	}
	peers, err := peerSpecs(cfg)
	if err != nil {
		return fmt.Errorf("bgp: %w", err)
	}
	c.mu.Lock()
	c.cfg, c.peers = cfg, peers
	l := c.loop
	c.mu.Unlock()
	if l == nil {
		c.resetPeers(peers)
		c.views.stopped(cfg, "bgp not running")
		return nil
	}
	r := &reloadReq{cfg: cfg, peers: peers, done: make(chan error, 1)}
	l.request(func(q *requests) { q.reloads = append(q.reloads, r) })
	select {
	case err := <-r.done:
		return err
	case <-l.done:
		return nil // Run ended; the next Run starts with cfg
	}
}

// Shutdown is the SIGTERM path: every announced prefix is re-announced with
// the GRACEFUL_SHUTDOWN community (65535:0, plus the drain extras), kept for
// the drain grace or until ctx ends, whichever is first, then withdrawn.
// It returns once nothing is announced; the proxy keeps serving meanwhile.
// Run keeps running (everything withdrawn) until its own ctx ends.
func (c *Controller) Shutdown(ctx context.Context) error {
	l := c.currentLoop()
	if l == nil {
		return nil // not running: nothing is announced
	}
	done := make(chan struct{})
	l.request(func(q *requests) {
		q.shutdown = true
		q.waiters = append(q.waiters, done)
	})
	select {
	case <-done:
		return nil
	case <-l.done:
		return nil // Run ended and withdrew everything
	case <-ctx.Done():
	}
	c.log.Info("bgp shutdown: grace cut short, withdrawing now")
	l.request(func(q *requests) { q.force = true })
	timer := time.NewTimer(forceWait)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-l.done:
		return nil
	case <-timer.C:
		return fmt.Errorf("bgp shutdown: withdrawal not confirmed after %s: %w", forceWait, ctx.Err())
	}
}

// sync returns once the run loop has evaluated state written before the
// call. Tests use it instead of sleeping; it returns at once when Run is not
// running.
func (c *Controller) sync() {
	l := c.currentLoop()
	if l == nil {
		return
	}
	done := make(chan struct{})
	l.request(func(q *requests) { q.syncs = append(q.syncs, done) })
	select {
	case <-done:
	case <-l.done:
	}
}
