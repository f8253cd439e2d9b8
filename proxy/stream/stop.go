package stream

import "sync"

// stopper is a front end's run state: Serve runs at most once, and not
// after Close.
type stopper struct {
	mu      sync.Mutex
	started bool
	done    bool
	ch      chan struct{}
}

// start says whether Serve may run: false once Close was called.
func (s *stopper) start() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.started {
		return false
	}
	s.started = true
	return true
}

// close runs f once, with whether Serve had started.
func (s *stopper) close(f func(started bool)) {
	s.mu.Lock()
	if s.done {
		s.mu.Unlock()
		return
	}
	s.done = true
	started := s.started
	ch := s.chanLocked()
	s.mu.Unlock()
	close(ch)
	f(started)
}

func (s *stopper) closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

// closing is closed when Close is called.
func (s *stopper) closing() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.chanLocked()
}

func (s *stopper) chanLocked() chan struct{} {
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}
