// Package ebpf is anyfront's XDP fast path: the program in xdp.c (compiled
// by bpf2go, output committed), and the Dataplane that loads it, attaches
// it to an interface, keeps its maps in line with the config and the
// proxy's dynamic blocks, and exposes its counters.
package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf/link"

	"github.com/anyfront/anyfront/config"
)

// ErrRunning is returned by Run when the Dataplane is running already.
var ErrRunning = errors.New("xdp: dataplane is already running")

// Dataplane owns the XDP program on one interface. New loads nothing; Run
// loads, attaches and serves until its context ends; Reload and Block may
// be called at any time, from any goroutine.
type Dataplane struct {
	log *slog.Logger

	mu     sync.Mutex
	cfg    *config.XDP
	blocks *blockSet
	// answers and acl are the answer cache's desired content, applied
	// whenever the program is loaded; publishes counts answers written.
	answers   answerSet
	acl       aclSet
	publishes uint64
	objs      *objects // nil unless Run is serving
	base      [verdictCount]uint64
	iface     string // where the program is attached; "" when it is not
	mode      string // driver or generic
	// placed is the interface and mode (as configured) Run attached by,
	// copied so that Reload compares with what is, not with a config
	// someone may still hold; nil when not attached.
	placed  *[2]string
	runDone chan struct{}

	reloadMu sync.Mutex // one Reload at a time

	// reattach carries interface or mode changes from Reload to Run, which
	// owns the link: attaching in Run's goroutine also keeps it in the
	// network namespace Run was started in.
	reattach chan reattachReq
	// kick tells Run that a block was added, to re-arm its expiry timer.
	kick chan struct{}
}

type reattachReq struct {
	cfg   *config.XDP
	reply chan error
}

// New checks cfg and returns a Dataplane that has not touched the kernel.
func New(cfg *config.XDP, log *slog.Logger) (*Dataplane, error) {
	static, err := check(cfg)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	d := &Dataplane{
		log:      log,
		cfg:      cfg,
		blocks:   newBlockSet(),
		reattach: make(chan reattachReq),
		kick:     make(chan struct{}, 1),
	}
	d.blocks.static = static
	return d, nil
}

// check validates what the config package cannot know: the program's map
// sizes. It returns the canonical static blocklist.
func check(cfg *config.XDP) (map[netip.Prefix]bool, error) {
	if cfg == nil {
		return nil, errors.New("xdp: no xdp section in the config")
	}
	if len(cfg.VIPs) == 0 || len(cfg.VIPs) > maxVIPs {
		return nil, fmt.Errorf("xdp: %d vips; between 1 and %d are supported", len(cfg.VIPs), maxVIPs)
	}
	if !slices.Contains([]string{"auto", "generic", "driver"}, cfg.Mode) {
		return nil, fmt.Errorf("xdp: unknown mode %q", cfg.Mode)
	}
	return staticPrefixes(cfg.Blocklist)
}

// Run loads the program, fills its maps, attaches it to the configured
// interface and serves until ctx is done; then it detaches what it
// attached and unloads. It returns nil after ctx ends, or the error that
// stopped it (without privileges, or when the kernel refuses the program
// or the attachment).
func (d *Dataplane) Run(ctx context.Context) error {
	// Reloads wait until the program is attached, so that none can slip
	// between reading the config and attaching by it.
	d.reloadMu.Lock()
	cfg, err := d.load()
	if err != nil {
		d.reloadMu.Unlock()
		return err
	}
	defer d.unload()
	lnk, err := d.attach(cfg)
	if err == nil {
		d.setPlaced(cfg)
	}
	d.reloadMu.Unlock()
	if err != nil {
		return err
	}
	defer func() { d.detach(lnk); d.setPlaced(nil) }()

	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	for {
		d.armExpiry(expiry)
		select {
		case <-ctx.Done():
			return nil
		case r := <-d.reattach:
			var err error
			lnk, err = d.move(lnk, cfg, r.cfg)
			if err == nil {
				cfg = r.cfg
				d.setPlaced(cfg)
			}
			r.reply <- err
			if lnk == nil {
				return fmt.Errorf("xdp: lost the attachment: %w", err)
			}
		case <-d.kick:
		case <-expiry.C:
			d.expire()
		}
	}
}

// load loads the objects and fills their maps from the current config,
// which it returns.
func (d *Dataplane) load() (*config.XDP, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objs != nil {
		return nil, ErrRunning
	}
	objs, err := loadObjects()
	if err != nil {
		return nil, err
	}
	if err := d.fill(objs); err != nil {
		objs.Close()
		return nil, err
	}
	d.objs, d.runDone = objs, make(chan struct{})
	return d.cfg, nil
}

func (d *Dataplane) setPlaced(cfg *config.XDP) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.placed = nil
	if cfg != nil {
		d.placed = &[2]string{cfg.Interface, cfg.Mode}
	}
}

// fill writes the config and blocks into freshly loaded maps.
func (d *Dataplane) fill(o *objects) error {
	if err := o.syncVIPs(d.cfg.VIPs); err != nil {
		return err
	}
	if err := o.setRateLimit(d.cfg.RateLimit); err != nil {
		return err
	}
	if err := o.syncBlocks(d.blocks.all(time.Now())); err != nil {
		return err
	}
	if err := o.syncACL(d.acl); err != nil {
		return err
	}
	n, err := o.syncAnswers(d.answers)
	d.publishes += uint64(n)
	return err
}

// unload closes the objects, keeping their counts so that the counters
// stay monotonic if Run is started again.
func (d *Dataplane) unload() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, err := d.objs.counts(); err == nil {
		for i := range c {
			d.base[i] += c[i]
		}
	}
	if err := d.objs.Close(); err != nil {
		d.log.Warn("xdp: unload", "reason", err)
	}
	d.objs = nil
	close(d.runDone)
}

// attach attaches the loaded program as cfg says and records where.
func (d *Dataplane) attach(cfg *config.XDP) (link.Link, error) {
	d.mu.Lock()
	prog := d.objs.AnyfrontXdp
	d.mu.Unlock()
	l, mode, err := attach(prog, cfg.Interface, cfg.Mode, d.log)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.iface, d.mode = cfg.Interface, mode
	d.mu.Unlock()
	d.log.Info("xdp: attached", "interface", cfg.Interface, "mode", mode)
	return l, nil
}

// detach removes only our own attachment (a bpf_link: the kernel also
// drops it if the process dies).
func (d *Dataplane) detach(l link.Link) {
	if l == nil {
		return
	}
	if err := l.Close(); err != nil {
		d.log.Warn("xdp: detach", "interface", d.iface, "reason", err)
	}
	d.mu.Lock()
	iface := d.iface
	d.iface, d.mode = "", ""
	d.mu.Unlock()
	d.log.Info("xdp: detached", "interface", iface)
}

// move re-attaches for a new interface or mode. On another interface the
// new attachment comes first, so that traffic is never unfiltered; on the
// same one (a mode change) the old must go first. If the new one fails
// the old is restored; a nil link means that failed too.
func (d *Dataplane) move(old link.Link, from, to *config.XDP) (link.Link, error) {
	if from.Interface != to.Interface {
		l, err := d.attach(to)
		if err != nil {
			return old, err
		}
		if err := old.Close(); err != nil {
			d.log.Warn("xdp: detach", "interface", from.Interface, "reason", err)
		}
		d.log.Info("xdp: detached", "interface", from.Interface)
		return l, nil
	}
	d.detach(old)
	l, err := d.attach(to)
	if err == nil {
		return l, nil
	}
	if back, err2 := d.attach(from); err2 == nil {
		return back, err
	}
	return nil, err
}

// armExpiry sets the timer for the earliest dynamic block's end.
func (d *Dataplane) armExpiry(t *time.Timer) {
	d.mu.Lock()
	next, ok := d.blocks.next()
	d.mu.Unlock()
	wait := time.Hour
	if ok {
		wait = max(time.Until(next), 0)
	}
	t.Reset(wait)
}

// expire removes the dynamic blocks that have ended.
func (d *Dataplane) expire() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.expireLocked(time.Now())
}

func (d *Dataplane) expireLocked(now time.Time) {
	for _, p := range d.blocks.expire(now) {
		if d.objs != nil && !d.blocks.has(p, now) {
			if err := d.objs.delBlock(p); err != nil {
				d.log.Warn("xdp: expire block", "prefix", p, "reason", err)
			}
		}
	}
}

// Reload applies a new xdp config: a new interface or mode re-attaches
// first, and if that fails nothing changes; then VIPs, blocklist and rate
// limit are updated in place (rate-limit buckets are emptied only when the
// prefix lengths change). An invalid config is rejected before anything
// changes. A nil cfg is an error: to stop XDP, cancel Run's context.
func (d *Dataplane) Reload(cfg *config.XDP) error {
	static, err := check(cfg)
	if err != nil {
		return err
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.mu.Lock()
	placed, done := d.placed, d.runDone
	d.mu.Unlock()
	if placed != nil && *placed != [2]string{cfg.Interface, cfg.Mode} {
		req := reattachReq{cfg: cfg, reply: make(chan error, 1)}
		select {
		case d.reattach <- req:
			if err := <-req.reply; err != nil {
				return err
			}
		case <-done: // Run ended: the next Run attaches as cfg says
		}
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg = cfg
	d.blocks.static = static
	if d.objs == nil {
		return nil
	}
	return errors.Join(d.objs.syncVIPs(cfg.VIPs), d.objs.setRateLimit(cfg.RateLimit),
		d.objs.syncBlocks(d.blocks.all(time.Now())))
}

// Block drops every packet from p to the VIPs until the given time; the
// block then ends by itself. Blocks may be added before Run starts; at most
// MaxDynamicBlocks are in force at once (ErrTooManyBlocks beyond). A
// later time for a prefix already blocked extends its block.
func (d *Dataplane) Block(p netip.Prefix, until time.Time) error {
	c, err := canonical(p)
	if err != nil {
		return err
	}
	now := time.Now()
	if !until.After(now) {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.blocks.dynamic) >= MaxDynamicBlocks {
		d.expireLocked(now) // Run may not have swept yet
	}
	if err := d.blocks.addDynamic(c, until, now); err != nil {
		return err
	}
	if d.objs != nil {
		if err := d.objs.putBlock(c); err != nil {
			return err
		}
	}
	select {
	case d.kick <- struct{}{}:
	default: // a kick is pending already
	}
	return nil
}

// Unblock lifts a dynamic block on p before its time is up, as an
// operator's DELETE /api/v1/blocks does. A prefix also on the static
// blocklist stays blocked; one that is not blocked is not an error.
func (d *Dataplane) Unblock(p netip.Prefix) error {
	c, err := canonical(p)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.blocks.dynamic[c]; !ok {
		return nil
	}
	delete(d.blocks.dynamic, c)
	if d.objs != nil && !d.blocks.has(c, time.Now()) {
		return d.objs.delBlock(c)
	}
	return nil
}
