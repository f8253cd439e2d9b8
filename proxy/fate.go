package proxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/udpsock"

	"github.com/anyfront/anyfront/state"
)

// A UDP query's fate. Each attempt times out after its backend's RTO; the
// query then goes again, to another usable backend while there is one,
// until its retries are spent. A first attempt slower than the pool's
// recent high percentile is hedged to another backend, within a budget. The
// first valid answer from any attempt wins; the slot then stays until the
// other attempts answer or the deadline passes, so that a backend is judged
// on what a client would have felt: an answer that came late is an answer,
// and only an attempt still unanswered at the deadline is a timeout.

// setDue puts the slot's next event in due.
func (sl *slot) setDue() {
	sl.due = sl.deadline
	if !sl.answered {
		sl.due = min(sl.due, sl.retryAt)
		if sl.hedgeAt != 0 {
			sl.due = min(sl.due, sl.hedgeAt)
		}
	}
}

// endAttempt stops awaiting attempt k.
func (sl *slot) endAttempt(k int) {
	a := &sl.att[k]
	if a.live {
		a.live = false
		sl.live--
		a.up.stats.Outstanding.Add(-1)
	}
}

// handleAnswer matches one backend answer to its query and returns the
// listener to answer from and the answer, with client filled in; a nil
// answer sends nothing. The answer is msg itself, or a stale cache entry
// built in out when the backend said SERVFAIL. qv is scratch for the query;
// now is p.now() when the answer's batch was read.
func (s *shard) handleAnswer(msg []byte, from netip.AddrPort, v *msgView, qv *msgView, client *udpsock.Addr, out []byte, now int64) (int, []byte) {
	p := s.p
	if len(msg) < dnswire.HeaderLen {
		p.stats.UnexpectedAnswers.Add(1)
		return 0, nil
	}
	s.mu.Lock()
	si := s.tab.lookup(binary.BigEndian.Uint16(msg))
	k := -1
	if si >= 0 {
		sl := &s.tab.slots[si]
		for i := 0; i < sl.natt; i++ {
			if sl.att[i].live && sl.att[i].up.addr == from {
				k = i
				break
			}
		}
	}
	if k < 0 {
		s.mu.Unlock()
		// Already answered by this backend, forged, or from an address
		// we did not ask: not ours to use.
		p.stats.UnexpectedAnswers.Add(1)
		return 0, nil
	}
	sl := &s.tab.slots[si]
	u := sl.att[k].up
	if err := dnswire.MatchResponse(msg, &v.View, sl.query[dnswire.HeaderLen:sl.qEnd]); err != nil {
		u.badAnswer.Add(1)
		u.obs.Observe(state.OutcomeBadAnswer, 0)
		if err == dnswire.ErrTruncated || v.Flags&dnswire.FlagQR != 0 && v.QDCount == 0 {
			// A header-only NOERROR/NXDOMAIN is a broken backend: this
			// attempt is over, and if none other is awaited, the next
			// goes now.
			sl.endAttempt(k)
			s.afterLoss(si, now)
		}
		// A wrong question may be a spoofing attempt: keep waiting for
		// the real answer.
		s.mu.Unlock()
		return 0, nil
	}
	rtt := now - sl.att[k].sent
	sample := !sl.sentTwice(u)
	ps := sl.pool
	sl.endAttempt(k)
	if sl.answered {
		// Another attempt won: this answer is only news of its backend.
		if sl.live == 0 {
			s.tab.release(si)
		}
		s.mu.Unlock()
		p.stats.LateAnswers.Add(1)
		u.answered(ps, now, rtt, sample, v.Rcode())
		return 0, nil
	}
	restoreQuery(msg, &v.View, sl.clientID, sl.query[dnswire.HeaderLen:sl.qEnd])
	*client = sl.client
	ln, limit, pool, refresh, mode := sl.ln, sl.maxUDP, sl.pool, sl.refresh, sl.ecs
	wait, local, tr := sl.wait, sl.local, sl.tr
	var again []byte
	if wait != nil && v.Flags&dnswire.FlagTC != 0 {
		// Too large for UDP, and a stream client takes any size.
		again = append(again, sl.query...)
	}
	if pool.cache != nil {
		// The key comes from the client's query, parsed now while the
		// slot still holds it.
		if qv.ParseQuery(sl.query) == nil {
			qv.PlanECS(&pool.ecs, sl.query, client.AddrPort().Addr())
			qv.key.Set(&qv.View)
		} else {
			pool = &poolSnap{} // cannot happen: it parsed on the way in
		}
	}
	if sl.live == 0 {
		s.tab.release(si)
	} else {
		sl.answered = true
		sl.setDue()
		s.tab.schedule(si)
	}
	s.mu.Unlock()

	u.answered(ps, now, rtt, sample, v.Rcode())
	if again != nil {
		p.refetchTCP(ps, again, client.AddrPort(), local, tr, wait)
		return 0, nil
	}
	msg, stale := p.acceptAnswer(pool, qv, mode, msg, &v.View, refresh, out, now)
	switch {
	case stale:
		if msg = dnswire.FitUDP(msg, limit); msg == nil {
			return 0, nil
		}
		p.observeAnswer(client.AddrPort().Addr(), msg)
		if wait != nil {
			s.deliver(wait, tr, client.AddrPort(), local, msg)
			return 0, nil
		}
		return ln, msg
	case msg == nil:
		return 0, nil // a refresh
	}
	n := len(msg)
	if n > limit {
		if n = dnswire.TruncateTo(msg, &v.View, limit); n == 0 {
			p.stats.SendErrors.Add(1)
			return 0, nil
		}
		p.stats.Truncated.Add(1)
	}
	p.observeAnswer(client.AddrPort().Addr(), msg[:n])
	if wait != nil {
		s.deliver(wait, tr, client.AddrPort(), local, msg[:n])
		return 0, nil
	}
	return ln, msg[:n]
}

// observeRTT folds one matched round trip into the backend's estimators
// and the pool's latency percentile.
func observeRTT(u *upstream, ps *poolSnap, now, rtt int64) {
	observeLatency(u, rtt)
	u.rtt.Observe(rtt)
	if ps.lat != nil {
		ps.lat.Observe(rtt)
		if ps.lat.Due(now) {
			ps.lat.Recompute(ps.hedgePct, fastestBound(ps.ups))
		}
	}
}

// fastestBound is the least rtt.Estimator.Bound of ups that has one.
func fastestBound(ups []*upstream) int64 {
	fastest := int64(0)
	for _, u := range ups {
		if b := u.rtt.Bound(); b > 0 && (fastest == 0 || b < fastest) {
			fastest = b
		}
	}
	return fastest
}

func outcomeOf(rcode int) state.Outcome {
	if rcode == dnswire.RcodeServFail {
		return state.OutcomeServFail
	}
	return state.OutcomeAnswer
}

// observeLatency folds one round trip into the backend's EWMA (weight 1/8,
// as TCP's SRTT), which the latency policy reads. Concurrent updates may
// lose one sample; that is harmless.
func observeLatency(u *upstream, rtt int64) {
	u.latency.Observe(float64(rtt) / 1e9)
	us := rtt / 1000
	if us < 1 {
		us = 1
	}
	old := u.stats.LatencyUS.Load()
	if old == 0 {
		u.stats.LatencyUS.Store(us)
		return
	}
	u.stats.LatencyUS.Store(old + (us-old)/8)
}

// afterLoss follows an attempt that ended without an answer (refused, or
// a broken answer): an answered slot with nothing left to hear from is
// freed; an unanswered one whose newest attempt that was, or that has no
// attempt left awaited, goes again now. Called with s.mu held.
func (s *shard) afterLoss(si int32, now int64) {
	sl := &s.tab.slots[si]
	if sl.answered {
		if sl.live == 0 {
			s.tab.release(si)
		}
		return
	}
	if sl.live > 0 && sl.att[sl.natt-1].live {
		return // the newest attempt is still awaited, on its own timer
	}
	if !s.nextAttempt(si, now, false) {
		if sl.live == 0 {
			s.servfail(si)
			return
		}
		sl.retryAt = sl.deadline // nothing more to send: wait for the rest
	}
	sl.setDue()
	s.tab.schedule(si)
}

// nextAttempt sends the slot's query once more: to a backend not tried yet,
// or when every usable one was, again to one but the newest attempt's. A
// hedge goes only to an untried backend. It reports whether a copy went;
// false when the retries are spent or no backend is left. Called with s.mu
// held.
func (s *shard) nextAttempt(si int32, now int64, hedge bool) bool {
	p := s.p
	sl := &s.tab.slots[si]
	snap := p.snap.Load()
	for sl.natt <= snap.retries && sl.natt < maxAttempts {
		pol := sl.pool.pol
		idx := pol.Pick(sl.hash, sl.tried)
		if idx < 0 && !hedge {
			sl.tried = sl.att[sl.natt-1].bit
			if idx = pol.Pick(sl.hash, sl.tried); idx < 0 {
				sl.tried = 0 // a pool of one
				idx = pol.Pick(sl.hash, 0)
			}
		}
		if idx < 0 {
			return false
		}
		u := sl.pool.ups[idx]
		bit := uint64(1) << (uint(idx) % 64)
		sl.tried |= bit
		sl.att[sl.natt] = attempt{up: u, sent: now, live: true, bit: bit}
		k := sl.natt
		sl.natt++
		sl.live++
		u.stats.Outstanding.Add(1)
		u.queries.Add(1)
		if hedge {
			u.hedges.Add(1)
			p.stats.Hedges.Add(1)
		} else {
			p.stats.Retries.Add(1)
		}
		q := sl.query
		if u.pp || sl.ecs != dnswire.ECSNone {
			q = s.retryWire(sl, u)
		} else {
			binary.BigEndian.PutUint16(sl.query, sl.id)
		}
		_, err := udpsock.SendTo(s.bfd, &u.sa, q, s.drainFn)
		binary.BigEndian.PutUint16(sl.query, sl.clientID)
		if err == nil {
			at := now + u.rtt.RTO(snap.rtoFloor, snap.rtoCeil)
			if hedge {
				// The first attempt's own timeout still stands: the next
				// copy waits for the later of the two.
				at = max(at, sl.retryAt)
			}
			sl.retryAt = at
			return true
		}
		// Refused at once too: on to the next, within the budget.
		sl.endAttempt(k)
		p.stats.SendErrors.Add(1)
		if hedge {
			return false
		}
	}
	return false
}

// giveUp ends every attempt still awaited at the deadline: those are the
// timeouts a client felt, and what health checking hears of.
func (s *shard) giveUp(sl *slot) {
	for k := 0; k < sl.natt; k++ {
		if a := &sl.att[k]; a.live {
			sl.endAttempt(k)
			a.up.timeouts.Add(1)
			a.up.obs.Observe(state.OutcomeTimeout, 0)
		}
	}
}

// fire handles a slot whose due time has come. Called with s.mu held.
func (s *shard) fire(si int32, now int64) {
	p := s.p
	sl := &s.tab.slots[si]
	if sl.due > now {
		s.tab.schedule(si) // parked in the wheel's last bucket
		return
	}
	if now >= sl.deadline {
		s.giveUp(sl)
		if sl.answered {
			s.tab.release(si)
			return
		}
		p.stats.DeadlinePassed.Add(1)
		s.servfail(si)
		return
	}
	if sl.hedgeAt != 0 && now >= sl.hedgeAt {
		sl.hedgeAt = 0
		switch lat := sl.pool.lat; {
		case !lat.Spend():
			p.stats.HedgesDenied.Add(1)
		case !s.nextAttempt(si, now, true):
			lat.Refund() // nowhere to hedge to: unspent
		}
	}
	if now >= sl.retryAt {
		if newest := &sl.att[sl.natt-1]; newest.live {
			newest.up.retransmits.Add(1)
		}
		p.stats.Timeouts.Add(1)
		if !s.nextAttempt(si, now, false) {
			if sl.live == 0 {
				s.servfail(si)
				return
			}
			sl.retryAt = sl.deadline // retries spent: wait for the rest
		}
	}
	sl.setDue()
	s.tab.schedule(si)
}

// servfail answers the slot's client with a stale cache entry or SERVFAIL
// once no attempt can answer any more, and frees the slot.
func (s *shard) servfail(si int32) {
	sl := &s.tab.slots[si]
	v := &s.view
	if !sl.refresh && v.ParseQuery(sl.query) == nil {
		if sl.pool.cache != nil {
			v.PlanECS(&sl.pool.ecs, sl.query, sl.client.AddrPort().Addr())
			v.key.Set(&v.View)
		}
		var stale bool
		s.reply, stale = s.p.failAnswer(sl.pool, &v.key, sl.query, v, s.reply[:0])
		if !stale {
			s.p.stats.ServFail.Add(1)
		}
		if sl.wait != nil {
			// Under s.mu: a waiter does not block.
			s.p.deliver(sl.wait, sl.tr, sl.client.AddrPort(), sl.local, s.reply)
			for k := 0; k < sl.natt; k++ {
				sl.endAttempt(k)
			}
			s.tab.release(si)
			return
		}
		fit := dnswire.FitUDP(s.reply, sl.maxUDP)
		if _, err := udpsock.SendTo(s.p.udpLns[sl.ln].fd, &sl.client, fit, nil); err != nil {
			s.p.stats.SendErrors.Add(1)
		}
		s.p.logResponseUDP(&sl.client, s.p.udpLns[sl.ln].addr, fit)
	}
	for k := 0; k < sl.natt; k++ {
		sl.endAttempt(k)
	}
	s.tab.release(si)
}

// retryWire builds the slot's query as it goes to u in s.wire: the edits
// are redone from the client's query, which the slot keeps as it came.
// Called with s.mu held.
func (s *shard) retryWire(sl *slot, u *upstream) []byte {
	v := &s.view
	if v.ParseQuery(sl.query) != nil {
		v.ECS.Mode = dnswire.ECSNone // cannot happen: it parsed on the way in
	} else {
		v.PlanECS(&sl.pool.ecs, sl.query, sl.client.AddrPort().Addr())
	}
	local := sl.local
	if sl.ln >= 0 {
		local = s.p.udpLns[sl.ln].addr
	}
	s.wire = appendWire(s.wire[:0], u, sl.client.AddrPort(), local, sl.query, v, sl.id)
	return s.wire
}
