package bgp

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// fakeSession is the session (and Announcer) the controller tests run
// against: it records what is announced and every change, without GoBGP.
type fakeSession struct {
	mu      sync.Mutex
	paths   map[netip.Prefix]Path
	changes []change
	peers   []peerSpec
	watch   func(peerEvent)
	closed  bool
	failSet error
}

// change is one effective change the controller made to the announced set.
type change struct {
	Prefix netip.Prefix
	Path   Path // zero Prefix when withdrawn
}

func newFakeSession() *fakeSession { return &fakeSession{paths: map[netip.Prefix]Path{}} }

func (f *fakeSession) Set(paths ...Path) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("fake: set after close")
	}
	if f.failSet != nil {
		return f.failSet
	}
	want := map[netip.Prefix]Path{}
	for _, p := range paths {
		if _, dup := want[p.Prefix]; dup {
			return errors.New("fake: duplicate prefix")
		}
		want[p.Prefix] = p
	}
	for prefix := range f.paths {
		if _, ok := want[prefix]; !ok {
			delete(f.paths, prefix)
			f.changes = append(f.changes, change{Prefix: prefix})
		}
	}
	for prefix, p := range want {
		if old, ok := f.paths[prefix]; !ok || !old.Equal(p) {
			f.paths[prefix] = p
			f.changes = append(f.changes, change{Prefix: prefix, Path: p})
		}
	}
	return nil
}

func (f *fakeSession) SetPeers(_ context.Context, peers []peerSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.peers = slices.Clone(peers)
	return nil
}

func (f *fakeSession) WatchPeers(_ context.Context, fn func(peerEvent)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.watch = fn
	return nil
}

func (f *fakeSession) Close(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for prefix := range f.paths {
		f.changes = append(f.changes, change{Prefix: prefix})
	}
	f.paths = map[netip.Prefix]Path{}
	f.closed = true
	return nil
}

func (f *fakeSession) watching() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watch != nil
}

// peer reports a session state change, as GoBGP's watcher would.
func (f *fakeSession) peer(addr, state string) {
	f.mu.Lock()
	fn := f.watch
	f.mu.Unlock()
	fn(peerEvent{Address: netip.MustParseAddr(addr), State: state})
}

func (f *fakeSession) announced(prefix string) (Path, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.paths[netip.MustParsePrefix(prefix)]
	return p, ok
}

// changesOf counts the announce, modify and withdraw operations on prefix.
func (f *fakeSession) changesOf(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.changes {
		if c.Prefix == netip.MustParsePrefix(prefix) {
			n++
		}
	}
	return n
}

// fakeClock is a manual clock: time moves only on Advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch, func() {}
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), ch: ch})
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.timers = slices.DeleteFunc(c.timers, func(t fakeTimer) bool { return t.ch == ch })
	}
}

// Advance moves time on and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.timers = slices.DeleteFunc(c.timers, func(t fakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		t.ch <- c.now
		return true
	})
}
