package healthcheck

import (
	"fmt"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// TestLazyProbesOnlyWhenTrafficFails: quiet while queries are answered,
// probing once they fail, down after fall failed probes, up again after
// rise good ones, and quiet once more.
func TestLazyProbesOnlyWhenTrafficFails(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	l := newLab(t, parse(t, pool("default", ", mode: lazy, window: 2s, min_samples: 10, failure_ratio: 0.5", labBackend{"r1", u.Addr})))
	obs := l.c.Observer("r1")

	// Lazy mode still gives a first verdict, then goes quiet.
	l.waitHealth(t, "r1", state.HealthUp, labInterval+labTimeout+slack)
	quiet := func() (bool, string) {
		s := l.status(t, "r1")
		return !s.Probing, fmt.Sprintf("still probing: %+v", s)
	}
	waitFor(t, labRise*labInterval+slack, quiet)

	t.Run("answered traffic sends no probes", func(t *testing.T) {
		sent := l.status(t, "r1").ProbesSent
		// Feed answers, with the odd failure below the ratio, for
		// several intervals, as the proxy would.
		end := time.Now().Add(4 * labInterval)
		for i := 0; time.Now().Before(end); i++ {
			out := state.OutcomeAnswer
			if i%5 == 0 {
				out = state.OutcomeServFail
			}
			obs.Observe(out, 100)
			time.Sleep(time.Millisecond) // traffic pacing
		}
		if s := l.status(t, "r1"); s.ProbesSent != sent || s.Probing {
			t.Errorf("probes sent %d -> %d, probing %v: want none while traffic is fine", sent, s.ProbesSent, s.Probing)
		}
	})

	t.Run("failing traffic starts probes and a dead backend goes down", func(t *testing.T) {
		u.Kill()
		sent := l.status(t, "r1").ProbesSent
		// The window still holds the answers above: failures must
		// outweigh them, as they would with real traffic.
		waitFor(t, 2*time.Second, func() (bool, string) {
			for range 50 {
				obs.Observe(state.OutcomeTimeout, 0)
			}
			s := l.status(t, "r1")
			return s.ProbesSent > sent, "no probe after failing traffic"
		})
		l.waitHealth(t, "r1", state.HealthDown, labFall*labInterval+labTimeout+slack)
	})

	t.Run("a restarted backend comes up and the checker goes quiet", func(t *testing.T) {
		if err := u.Restart(); err != nil {
			t.Fatal(err)
		}
		l.waitHealth(t, "r1", state.HealthUp, labRise*labInterval+slack)
		waitFor(t, slack, quiet)
	})
}
