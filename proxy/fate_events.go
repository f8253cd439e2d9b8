package proxy

import (
	"net/netip"
	"time"

	"github.com/anyfront/anyfront/proxy/internal/udpsock"
	"github.com/anyfront/anyfront/state"
)

// What wakes a UDP query's fate besides an answer: ICMP refusals from the
// backend socket's error queue, and the timer wheel's ticks.

// refused handles an ICMP error for a datagram sent to dst: that backend is
// not answering, so every attempt awaiting it ends now, and the queries
// they were the newest attempt of go on at once.
func (s *shard) refused(dst netip.AddrPort) {
	u := s.p.upstreamAt(dst)
	if u == nil {
		return
	}
	u.refusals.Add(1)
	u.obs.Observe(state.OutcomeUnreachable, 0)
	now := s.p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired = s.tab.each(s.expired[:0])
	for _, si := range s.expired {
		sl := &s.tab.slots[si]
		if !sl.inUse {
			continue // freed by an earlier one's servfail: cannot happen, slots are distinct
		}
		if k := sl.attemptTo(u); k >= 0 {
			sl.endAttempt(k)
			s.afterLoss(si, now)
		}
	}
}

// drainErrs reads the backend socket's ICMP error queue, noting which
// backends refused; the sender calls it when a send reports an earlier
// datagram's error, because only an empty queue clears that error.
func (s *shard) drainErrs() {
	udpsock.ReadErrQueue(s.bfd, s.noteRefused)
}

func (s *shard) noteRefused(dst netip.AddrPort) {
	s.errMu.Lock()
	if !contains(s.refusedQ, dst) && len(s.refusedQ) < cap(s.refusedQ) {
		s.refusedQ = append(s.refusedQ, dst)
	}
	s.errMu.Unlock()
	s.errPending.Store(true)
}

func contains(l []netip.AddrPort, a netip.AddrPort) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// handleRefused acts on the refusals noted since the last call. It takes
// s.mu, so it runs only where the caller does not hold it.
func (s *shard) handleRefused() {
	if !s.errPending.Load() {
		return
	}
	s.drainErrs()
	s.errPending.Store(false)
	s.errMu.Lock()
	var dsts [refusedMax]netip.AddrPort
	n := copy(dsts[:], s.refusedQ)
	s.refusedQ = s.refusedQ[:0]
	s.errMu.Unlock()
	for _, d := range dsts[:n] {
		s.refused(d)
	}
}

// refusedMax bounds the distinct refusing backends noted between two
// handleRefused calls; more in that instant are left to their RTO.
const refusedMax = 16

// timeoutLoop fires slots as their time comes: every wheel tick while
// queries are in flight, and not at all while the table is empty. It runs
// until stop closes, which Run does only after draining, so queries in
// flight at shutdown still get their retries.
func (s *shard) timeoutLoop(stop <-chan struct{}) {
	t := time.NewTimer(time.Duration(wheelTick))
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		idle := s.expire()
		s.handleRefused()
		if idle {
			select {
			case <-stop:
				return
			case <-s.wake:
			}
		}
		t.Reset(time.Duration(wheelTick))
	}
}

// expire fires every slot whose time has come; it reports whether the
// table is empty after.
func (s *shard) expire() bool {
	now := s.p.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expired = s.tab.expire(now, s.expired[:0])
	for _, si := range s.expired {
		s.fire(si, now)
	}
	return s.tab.n == 0
}
