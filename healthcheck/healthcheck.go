// Package healthcheck decides whether each backend is up or down, from
// active DNS probes and from the outcomes of live queries the proxy reports,
// and writes its verdicts to the state store.
//
// It is built to be cheap at scale: one scheduler goroutine with a timer
// heap owns one shared UDP socket per address family. On each wake-up it
// reads every answer that has arrived (matched to its probe by source
// address and ID), expires overdue probes and sends the due ones, each in
// one system call; nearby events share a wake-up. So a thousand backends
// cost a thousand small packets and about twenty wake-ups a second, and no
// goroutine, socket or allocation per probe. See README.md for behaviour.
package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

// ErrRunning is returned by Run when the Checker is already running.
var ErrRunning = errors.New("healthcheck: already running")

// Deps are what the Checker needs from the rest of the daemon.
type Deps struct {
	// Store receives health verdicts; it is required.
	Store *state.Store
	// Log receives transitions (Info) and probe plumbing problems; nil
	// means slog.Default().
	Log *slog.Logger
}

// Checker health-checks every configured backend. Create it with New, start
// it with Run; Reload, Observer, Status and Collector are safe to call from
// any goroutine at any time.
type Checker struct {
	store *state.Store
	log   *slog.Logger
	epoch time.Time // the zero of the monotonic clock c.now reads
	// jitter returns a random duration in [0, d): spread start times so
	// backends are not probed in lockstep. Tests replace it to pin the
	// first probe.
	jitter func(d time.Duration) time.Duration
	// wake rouses the scheduler: a traffic trigger or a reload changed
	// what is due. Capacity 1: one pending wake-up covers any number.
	wake chan struct{}

	mu         sync.Mutex
	backends   map[string]*backend
	observers  map[string]*observer  // kept for the Checker's life, see Observer
	pending    map[probeKey]*backend // UDP probes in flight
	pending6   int                   // how many of them are IPv6
	queue      probeQueue
	slack      time.Duration // see slackFor
	running    bool
	ctx        context.Context // Run's context, for TCP probes
	noV6       error           // why there is no IPv6 probe socket, while running
	unexpected uint64
	tcpWG      sync.WaitGroup // TCP probes in flight
}

// New prepares a Checker for cfg's backends. It starts no goroutine and
// opens no socket; Run does.
func New(cfg *config.Config, deps Deps) (*Checker, error) {
	if deps.Store == nil {
		return nil, errors.New("healthcheck: no state store")
	}
	log := deps.Log
	if log == nil {
		log = slog.Default()
	}
	c := &Checker{
		store:     deps.Store,
		log:       log,
		epoch:     time.Now(),
		jitter:    func(d time.Duration) time.Duration { return rand.N(d) },
		wake:      make(chan struct{}, 1),
		backends:  map[string]*backend{},
		observers: map[string]*observer{},
		pending:   map[probeKey]*backend{},
	}
	if _, err := c.apply(cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// now is monotonic nanoseconds since New; it does not allocate.
func (c *Checker) now() int64 { return int64(time.Since(c.epoch)) }

// Run probes until ctx is done. It owns every goroutine the Checker starts
// (the scheduler, the store watcher and TCP probes) and returns after all
// of them have stopped and its sockets are closed.
func (c *Checker) Run(ctx context.Context) error {
	v4, err := openProbeSocket(false, sendBatch)
	if err != nil {
		return fmt.Errorf("healthcheck: open IPv4 probe socket: %w", err)
	}
	// A host without IPv6 still checks IPv4 backends; IPv6 probes then
	// fail with this error as their reason.
	v6, err6 := openProbeSocket(true, sendBatch)
	socks := &sockets{c: c, v4: v4, v6: v6}
	if err6 != nil {
		socks.v6 = nil
	}
	defer socks.close()

	c.mu.Lock()
	if c.running {
		c.mu.Unlock()
		return ErrRunning
	}
	c.running, c.ctx, c.noV6 = true, ctx, err6
	now := c.now()
	for _, b := range c.backends {
		if b.wantsProbes() {
			c.schedule(b, now+int64(c.jitter(b.set.interval)))
		}
	}
	c.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.store.Watch(ctx, c.reconcile); err != nil {
			c.log.Error("healthcheck: watching the state store stopped", "err", err)
		}
	})
	c.loop(ctx, socks)
	wg.Wait()
	c.tcpWG.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.running, c.ctx, c.noV6 = false, nil, nil
	clear(c.pending)
	c.pending6 = 0
	for _, b := range c.backends {
		b.inflight = false
		c.unschedule(b)
	}
	return nil
}

// Reload applies a new config: backends that appeared are checked from now
// on, removed ones are forgotten, and changed probe settings apply from each
// backend's next probe. A backend that keeps its name, pool and address keeps
// its verdict and counters; one that moved starts afresh, as the store does.
func (c *Checker) Reload(cfg *config.Config) {
	changed, err := c.apply(cfg)
	if err != nil {
		// Every query and setting was already validated by config; a
		// failure here is a bug, and the old settings stay.
		c.log.Error("healthcheck: reload rejected", "err", err)
		return
	}
	if changed {
		c.poke()
	}
}

// poke wakes the scheduler without blocking.
func (c *Checker) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// The Checker is the proxy's outcome sink, wired in cmd/anyfront.
var _ state.OutcomeSink = (*Checker)(nil)

// Observer returns the live-traffic observer of the named backend, for the
// proxy's hot path. It is never nil: for a name not (yet) configured it makes
// one that starts counting once the backend appears, since the proxy may
// learn of a backend from the store before Reload reaches the Checker.
// Observers live as long as the Checker, so one the proxy holds stays
// connected across a backend's removal and return.
func (c *Checker) Observer(backend string) state.Observer {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.observer(backend)
}

func (c *Checker) observer(name string) *observer {
	o := c.observers[name]
	if o == nil {
		o = &observer{wake: c.wake}
		c.observers[name] = o
	}
	return o
}

// Collector returns the Checker's Prometheus metrics.
func (c *Checker) Collector() prometheus.Collector { return collector{c} }

// Status is what the Checker knows about one backend, for the admin API.
type Status struct {
	Backend string
	Pool    string
	Address netip.AddrPort
	Mode    string // active or lazy
	// Health is the Checker's verdict; before the first one (Checked
	// false) it is the optimistic HealthUp the store starts with.
	Health  state.Health
	Checked bool
	// Probing is whether probes are scheduled: always in active mode; in
	// lazy mode only until the first verdict, while live traffic fails,
	// and while the backend is down.
	Probing bool
	// LastResult describes the last probe ("answered NOERROR", "timed
	// out", "rcode SERVFAIL", ...); empty before the first.
	LastResult string
	LastProbe  time.Time
	// LastRTT is the round trip of the last answered probe.
	LastRTT time.Duration
	// Successes and Failures count consecutive probe results; one of the
	// two is always 0.
	Successes, Failures int
	// ProbesSent and ProbesFailed count probes since the backend was
	// added (or last moved to another pool or address).
	ProbesSent, ProbesFailed uint64
	Transitions              uint64
}

// Status returns the named backend's status; false when it is not
// configured.
func (c *Checker) Status(backend string) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.backends[backend]
	if b == nil {
		return Status{}, false
	}
	return b.status(), true
}
