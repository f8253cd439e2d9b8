package healthcheck

import (
	"container/heap"
	"context"
	"time"
)

// The scheduler lets events that fall due close together share one
// wake-up: it sleeps until the first is due plus a slack, then handles all
// that are due. Wake-ups are the main cost of checking at scale (a timer
// wake-up costs about as much CPU as sending ten probes), so a thousand
// backends at 1s intervals cost 20 wake-ups a second, not 3,000 (a send, an
// answer and a deadline each). Probes go out, answers are read and timeouts
// noticed up to one slack late: a twentieth of the shortest interval, so at
// most 5% of any interval, and never more than maxSlack.
const (
	slackDivisor = 20
	maxSlack     = 50 * time.Millisecond
	minSlack     = time.Millisecond
)

// slackFor returns the scheduler's slack for the shortest interval.
func slackFor(shortest time.Duration) time.Duration {
	return min(max(shortest/slackDivisor, minSlack), maxSlack)
}

// idleWait is how long the scheduler sleeps with nothing queued (lazy mode,
// all quiet); a trigger or reload wakes it sooner.
const idleWait = time.Hour

// probeQueue is a min-heap of backends by their next event. Each backend is
// in it at most once: at its next probe, or at its probe's deadline.
type probeQueue []*backend

func (q probeQueue) Len() int           { return len(q) }
func (q probeQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q probeQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *probeQueue) Push(x any) {
	b := x.(*backend)
	b.idx = len(*q)
	*q = append(*q, b)
}
func (q *probeQueue) Pop() any {
	old := *q
	b := old[len(old)-1]
	old[len(old)-1] = nil
	b.idx = -1
	*q = old[:len(old)-1]
	return b
}

// schedule sets b's next event, queueing it if needed.
func (c *Checker) schedule(b *backend, at int64) {
	b.at = at
	if b.queued() {
		heap.Fix(&c.queue, b.idx)
	} else {
		heap.Push(&c.queue, b)
	}
}

func (c *Checker) unschedule(b *backend) {
	if b.queued() {
		heap.Remove(&c.queue, b.idx)
	}
}

// outgoing is a UDP probe decided under the lock and sent after it.
type outgoing struct {
	b   *backend
	seq uint64
	id  uint16
	set *settings
}

// loop is the scheduler: it sends due probes, expires overdue ones and takes
// live-traffic triggers, until ctx is done.
func (c *Checker) loop(ctx context.Context, socks *sockets) {
	timer := time.NewTimer(idleWait)
	defer timer.Stop()
	var (
		batch []outgoing
		scan  = true // triggers may predate Run
	)
	for {
		socks.receive()
		c.mu.Lock()
		wall := time.Now()
		now := int64(wall.Sub(c.epoch))
		if scan {
			for _, b := range c.backends {
				if !b.triggered && b.obs.trig.Load() {
					c.trigger(b, now)
				}
			}
		}
		batch = c.due(now, wall, batch[:0])
		wait := idleWait
		if len(c.queue) > 0 {
			wait = time.Duration(c.queue[0].at-now) + c.slack
		}
		if len(c.pending) > 0 {
			// Answers are read on wake-ups (probesock_linux.go):
			// come back for them soon.
			wait = min(wait, c.slack)
		}
		socks.want6 = c.pending6 > 0
		c.mu.Unlock()

		socks.send(batch)
		clear(batch) // drop backend pointers until the next round
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			scan = false
		case <-c.wake:
			scan = true
		}
	}
}

// due handles every event at or before now, appending UDP probes to send.
func (c *Checker) due(now int64, wall time.Time, batch []outgoing) []outgoing {
	for len(c.queue) > 0 && c.queue[0].at <= now {
		b := c.queue[0]
		if b.inflight {
			if deadline := b.sentAt + int64(b.sentWith.timeout); !b.sentWith.tcp && !b.resent && now < deadline {
				// Half the timeout gone: the same probe (same ID) once
				// more, and the full timeout still stands.
				b.resent = true
				c.schedule(b, deadline)
				batch = append(batch, outgoing{b: b, seq: b.seq, id: b.id, set: b.sentWith})
				continue
			}
			c.expire(b, now)
			continue
		}
		if o, ok := c.launch(b, now, wall); ok {
			batch = append(batch, o)
		}
	}
	return batch
}

// launch starts a probe of b. A UDP probe is returned for sending; a TCP
// probe runs on its own goroutine (TCP needs a connection per probe anyway).
func (c *Checker) launch(b *backend, now int64, wall time.Time) (outgoing, bool) {
	set := b.set
	b.inflight, b.due, b.sentAt, b.sentWall, b.sentWith = true, b.at, now, wall, set
	b.seq++
	b.launched++
	b.resent = false
	if set.tcp {
		c.schedule(b, now+int64(set.timeout))
	} else {
		c.schedule(b, now+int64(set.timeout)/2) // resent then: see due
	}
	if set.tcp {
		b.id = randID()
		c.tcpWG.Add(1)
		go c.probeTCP(c.ctx, b, b.seq, b.id, set)
		return outgoing{}, false
	}
	if b.addr.Addr().Is6() && c.noV6 != nil {
		c.finish(b, resultError, 0, "no IPv6 probe socket: "+c.noV6.Error(), 0, now)
		return outgoing{}, false
	}
	for {
		// A fresh random ID per probe: an off-path forger must guess
		// it, and a late answer to an earlier probe does not match.
		b.id = randID()
		k := probeKey{b.match, b.id}
		if _, taken := c.pending[k]; !taken {
			c.pending[k] = b
			if k.addr.Addr().Is6() {
				c.pending6++
			}
			break
		}
	}
	return outgoing{b: b, seq: b.seq, id: b.id, set: set}, true
}

// expire fails b's probe, whose deadline has passed.
func (c *Checker) expire(b *backend, now int64) {
	c.unpend(b)
	c.finish(b, resultTimeout, 0, "", 0, now)
}

// ended finishes probe seq of b if it is still the current one: a probe
// that timed out, or a backend removed meanwhile, must not count twice.
func (c *Checker) ended(b *backend, seq uint64, r result, rcode int, detail string, rtt time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !b.inflight || b.seq != seq || c.backends[b.name] != b {
		return
	}
	c.unpend(b)
	c.finish(b, r, rcode, detail, rtt, c.now())
}

// unpend drops b's UDP probe from the table answers are matched against.
// The check keeps another backend on the same address, which drew the
// same ID, from losing its entry (and does nothing for TCP probes).
func (c *Checker) unpend(b *backend) {
	k := probeKey{b.match, b.id}
	if c.pending[k] == b {
		c.unpendKey(k)
	}
}

func (c *Checker) unpendKey(k probeKey) {
	delete(c.pending, k)
	if k.addr.Addr().Is6() {
		c.pending6--
	}
}
