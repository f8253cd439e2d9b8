package healthcheck

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/state"
)

// TestActiveChecksFollowTheBackend walks one real unbound through a crash,
// a restart, a hang and a resume, checking each verdict and its timing.
func TestActiveChecksFollowTheBackend(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	l := newLab(t, parse(t, pool("default", "", labBackend{"r1", u.Addr})))

	// The first verdict needs one answered probe, sent within one
	// jittered interval.
	l.waitHealth(t, "r1", state.HealthUp, labInterval+labTimeout+slack)
	if r := l.row(t, "r1"); r.Reason != "1 probe answered" {
		t.Errorf("first verdict reason = %q, want %q", r.Reason, "1 probe answered")
	}

	// Going down takes fall failed probes: the first may be sent up to an
	// interval after the failure, the last fails after its timeout.
	downWithin := labFall*labInterval + labTimeout + slackFor(labInterval) + slack
	upWithin := labRise*labInterval + slackFor(labInterval) + slack
	for _, step := range []struct {
		name   string
		do     func() error
		want   state.Health
		reason string
		within time.Duration
	}{
		{"a killed backend goes down", func() error { u.Kill(); return nil }, state.HealthDown, "2 probes timed out", downWithin},
		{"a restarted backend comes up after rise probes", u.Restart, state.HealthUp, "2 probes answered", upWithin},
		{"a hung backend goes down", u.Stop, state.HealthDown, "2 probes timed out", downWithin},
		{"a resumed backend comes up", u.Cont, state.HealthUp, "2 probes answered", upWithin},
	} {
		t.Run(step.name, func(t *testing.T) {
			before := l.status(t, "r1").Transitions
			if err := step.do(); err != nil {
				t.Fatal(err)
			}
			took := l.waitHealth(t, "r1", step.want, step.within)
			t.Logf("%s after %v (bound %v)", step.want, took.Round(time.Millisecond), step.within)
			if r := l.row(t, "r1"); r.Reason != step.reason {
				t.Errorf("reason = %q, want %q", r.Reason, step.reason)
			}
			if got := l.status(t, "r1").Transitions; got != before+1 {
				t.Errorf("transitions = %d, want %d", got, before+1)
			}
		})
	}
}

// TestProbeSettingsDecideTheVerdict runs one pool per case against the same
// resolver (and a closed port), so every case probes at once.
func TestProbeSettingsDecideTheVerdict(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	closed := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	tests := []struct {
		name   string
		hc     string // extra healthcheck keys
		addr   netip.AddrPort
		want   state.Health
		reason string // prefix
	}{
		{"a NOERROR answer is healthy", "", u.Addr, state.HealthUp, "1 probe answered"},
		{"NXDOMAIN is healthy by default", ", qname: nope.invalid.", u.Addr, state.HealthUp, "1 probe answered"},
		{"NXDOMAIN fails when only NOERROR is expected", ", qname: nope.invalid., rcodes: [NOERROR]", u.Addr, state.HealthDown, "rcode NXDOMAIN"},
		{"NOERROR fails when only NXDOMAIN is expected", ", rcodes: [NXDOMAIN]", u.Addr, state.HealthDown, "rcode NOERROR"},
		{"a TCP probe is answered", ", tcp: true", u.Addr, state.HealthUp, "1 probe answered"},
		{"a closed port times out over UDP", "", closed, state.HealthDown, "2 probes timed out"},
		{"a closed port is refused over TCP", ", tcp: true", closed, state.HealthDown, "probe failed"},
	}
	var pools []string
	for i, tt := range tests {
		pools = append(pools, pool(poolName(i), tt.hc, labBackend{backendName(i), tt.addr}))
	}
	l := newLab(t, parse(t, pools...))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.waitHealth(t, backendName(i), tt.want, labInterval+labFall*labInterval+labTimeout+slack)
			r := l.row(t, backendName(i))
			if !strings.HasPrefix(r.Reason, tt.reason) {
				t.Errorf("reason = %q, want it to start with %q", r.Reason, tt.reason)
			}
		})
	}
}

func poolName(i int) string    { return "p" + string(rune('a'+i)) }
func backendName(i int) string { return "b" + string(rune('a'+i)) }

// TestTrafficFailuresTriggerAProbeInActiveMode uses an interval far longer
// than the test: any probe it sees was asked for by live traffic.
func TestTrafficFailuresTriggerAProbeInActiveMode(t *testing.T) {
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	cfg := parse(t, `  default:
    healthcheck: {qname: health.test., interval: 30s, timeout: 200ms, rise: 2, fall: 2, min_samples: 10, failure_ratio: 0.5}
    backends: [{name: r1, address: "`+u.Addr.String()+`"}]
`)
	// Pin the first scheduled probe to the end of the interval.
	l := newLab(t, cfg, func(c *Checker) { c.jitter = func(d time.Duration) time.Duration { return d - 1 } })
	obs := l.c.Observer("r1")

	if s := l.status(t, "r1"); s.ProbesSent != 0 {
		t.Fatalf("probes sent before any trigger: %+v", s)
	}
	for range 10 {
		obs.Observe(state.OutcomeTimeout, 0)
	}
	waitFor(t, 2*time.Second, func() (bool, string) {
		s := l.status(t, "r1")
		return s.ProbesSent >= 1 && s.Checked, "no triggered probe yet"
	})
	if r := l.row(t, "r1"); !r.Checked || r.Health != state.HealthUp {
		t.Errorf("a live backend's triggered probe should confirm it up: %+v", r)
	}

	// The backend dies between probes; failing traffic gets it marked
	// down within a few timeouts, not after the 30s interval.
	u.Kill()
	start := time.Now()
	waitFor(t, 5*time.Second, func() (bool, string) {
		l.c.Observer("r1").Observe(state.OutcomeTimeout, 0) // the proxy keeps reporting
		r := l.row(t, "r1")
		return r.Health == state.HealthDown, "still up: " + r.Reason
	})
	t.Logf("down %v after the kill, with a 30s interval", time.Since(start).Round(time.Millisecond))
}
