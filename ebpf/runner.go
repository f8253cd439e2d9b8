package ebpf

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"

	cebpf "github.com/cilium/ebpf"

	"github.com/anyfront/anyfront/config"
)

// XDP actions Runner.Run returns, from linux/bpf.h.
const (
	XDP_ABORTED = 0 //nolint:revive // the kernel's names
	XDP_DROP    = 1
	XDP_PASS    = 2
	XDP_TX      = 3
)

// ErrClosed is returned by a Runner's methods after Close.
var ErrClosed = errors.New("xdp: runner is closed")

// runSlack is how much a frame may grow in Run: the largest answer
// sections plus the header and question the program may add.
const runSlack = 1024

// Runner is the program and its maps loaded without being attached
// anywhere: frames go through BPF_PROG_TEST_RUN. It is for tests and
// benchmarks in other packages (say, XDP's answer against the proxy's
// for the same query). Its methods are safe from any goroutine.
type Runner struct {
	mu   sync.RWMutex // Run holds it shared, so Close waits for runs in flight
	objs *objects     // nil after Close
}

// NewRunner loads the program and fills its maps from cfg (VIPs, rate
// limit, blocklist), as Dataplane.Run does, without attaching it. It needs
// the privileges Run needs.
func NewRunner(cfg *config.XDP) (*Runner, error) {
	static, err := check(cfg)
	if err != nil {
		return nil, err
	}
	o, err := loadObjects()
	if err != nil {
		return nil, err
	}
	err = errors.Join(o.syncVIPs(cfg.VIPs), o.setRateLimit(cfg.RateLimit), o.syncBlocks(static))
	if err != nil {
		o.Close()
		return nil, err
	}
	return &Runner{objs: o}, nil
}

// Run runs one Ethernet frame through the program and returns its action
// (XDP_PASS, XDP_DROP, XDP_TX, ...) and the frame as the program left it.
func (r *Runner) Run(frame []byte) (action uint32, out []byte, err error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	o := r.objs
	if o == nil {
		return 0, nil, ErrClosed
	}
	opts := &cebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+runSlack)}
	ret, err := o.AnyfrontXdp.Run(opts)
	if err != nil {
		return 0, nil, fmt.Errorf("xdp: test run: %w", err)
	}
	return ret, opts.DataOut, nil
}

// SyncAnswers is Dataplane.SyncAnswers for the Runner's maps.
func (r *Runner) SyncAnswers(answers []Answer) error {
	set, err := buildAnswers(answers)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil {
		return ErrClosed
	}
	_, werr := r.objs.syncAnswers(set)
	return errors.Join(err, werr)
}

// AnswerHits is Dataplane.AnswerHits for the Runner's maps.
func (r *Runner) AnswerHits() (map[AnswerKey]uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil {
		return nil, ErrClosed
	}
	return r.objs.answerHits()
}

// SetACL is Dataplane.SetACL for the Runner's maps.
func (r *Runner) SetACL(prefixes []netip.Prefix) error {
	set, err := buildACL(prefixes)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil {
		return ErrClosed
	}
	return r.objs.syncACL(set)
}

// Close unloads the program and its maps.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.objs == nil {
		return nil
	}
	err := r.objs.Close()
	r.objs = nil
	return err
}
