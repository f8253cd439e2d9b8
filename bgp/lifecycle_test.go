package bgp

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/anyfront/anyfront/state"
)

func TestRunEndWithdrawsEverythingAndClosesTheSession(t *testing.T) {
	h := newHarness(t, baseConfig)
	h.allHealthy("r1", "r2", "r3")
	h.wantAnnounced(v4, true)
	s := h.session()
	h.stop()
	if _, ok := s.announced(v4); ok || !s.closed {
		t.Errorf("after Run: announced %v, closed %v", ok, s.closed)
	}
	st := h.c.status()
	if st.Running || st.Prefixes[0].Announced || st.Prefixes[0].Reason != "bgp stopped" {
		t.Errorf("status after Run: %+v", st)
	}
	if err := h.c.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after Run: %v", err)
	}
}

func TestReload(t *testing.T) {
	t.Run("only what changed is touched", func(t *testing.T) {
		h := newHarness(t, baseConfig)
		h.allHealthy("r1", "r2", "r3")
		cfg := parseConfig(t, strings.Replace(strings.Replace(baseConfig, "min_healthy: 2", "min_healthy: 2\n      med: 20", 1),
			"peers: [{address: 198.51.100.1, asn: 65000}]", "peers: [{address: 198.51.100.1, asn: 65000}, {address: 198.51.100.3, asn: 65000}]", 1))
		if err := h.c.Reload(cfg.BGP); err != nil {
			t.Fatal(err)
		}
		if n := h.session().changesOf(v4); n != 1 {
			t.Errorf("%s changed %d times; the reload did not change it", v4, n)
		}
		if p := h.wantAnnounced(v6, true); p.MED != 20 {
			t.Errorf("v6 after reload: %s", p)
		}
		if n := len(h.session().peers); n != 2 {
			t.Errorf("peers after reload: %d", n)
		}
		if len(h.starts) != 1 {
			t.Errorf("BGP restarted by a reload that kept asn and router id")
		}
	})
	t.Run("a removed prefix is withdrawn", func(t *testing.T) {
		h := newHarness(t, baseConfig)
		h.allHealthy("r1", "r2", "r3")
		i := strings.Index(baseConfig, "    - prefix: 2001")
		if err := h.c.Reload(parseConfig(t, baseConfig[:i]).BGP); err != nil {
			t.Fatal(err)
		}
		h.wantAnnounced(v6, false)
		h.wantAnnounced(v4, true)
		if n := len(h.c.status().Prefixes); n != 1 {
			t.Errorf("status lists %d prefixes", n)
		}
	})
	t.Run("a new asn restarts BGP and announces again", func(t *testing.T) {
		h := newHarness(t, baseConfig)
		h.allHealthy("r1", "r2", "r3")
		first := h.session()
		if err := h.c.Reload(parseConfig(t, strings.Replace(baseConfig, "asn: 65001", "asn: 65002", 1)).BGP); err != nil {
			t.Fatal(err)
		}
		if !first.closed || len(h.starts) != 2 || h.starts[1].ASN != 65002 {
			t.Fatalf("restart: first closed %v, starts %+v", first.closed, h.starts)
		}
		h.session().peer("198.51.100.1", "established")
		h.sync()
		h.wantAnnounced(v4, true)
	})
}

func TestRestartThatFailsIsRetried(t *testing.T) {
	h := newHarness(t, baseConfig)
	h.allHealthy("r1", "r2", "r3")
	h.mu.Lock()
	h.failStart = errors.New("address in use")
	h.mu.Unlock()
	err := h.c.Reload(parseConfig(t, strings.Replace(baseConfig, "router_id: 198.51.100.2", "router_id: 198.51.100.9", 1)).BGP)
	if err == nil || !strings.Contains(err.Error(), "address in use") {
		t.Fatalf("Reload: %v", err)
	}
	if r := h.reason(v4); !strings.Contains(r, "bgp failed to start") {
		t.Errorf("reason %q", r)
	}
	if err := h.c.Shutdown(context.Background()); err != nil { // nothing announced: done at once
		t.Fatal(err)
	}
	h.advance(reopenDelay)
	eventually(t, waitTimeout, func() string {
		h.mu.Lock()
		n := len(h.sessions)
		h.mu.Unlock()
		if s := h.session(); n != 2 || !s.watching() {
			return "BGP not started again"
		}
		return ""
	})
	h.session().peer("198.51.100.1", "established")
	h.sync()
	h.wantAnnounced(v4, false) // the Shutdown above still holds
	if r := h.reason(v4); r != "shutting down" {
		t.Errorf("reason %q", r)
	}
}

func TestStatus(t *testing.T) {
	h := newHarness(t, baseConfig)
	h.allHealthy("r1", "r2", "r3")
	st := h.c.status()
	if !st.Running || st.ASN != 65001 || st.RouterID != "198.51.100.2" {
		t.Errorf("status %+v", st)
	}
	if len(st.Peers) != 1 || st.Peers[0].State != "established" || st.Peers[0].ASN != 65000 {
		t.Errorf("peers %+v", st.Peers)
	}
	p := st.Prefixes[0]
	if p.Prefix != v4 || !p.Announced || !slices.Equal(p.Communities, []string{"65001:53", "65001:1:2"}) || p.Since.IsZero() {
		t.Errorf("prefix %+v", p)
	}
	h.session().peer("198.51.100.1", "idle")
	st = h.c.status()
	if st.Prefixes[0].Announced || !strings.HasPrefix(st.Prefixes[0].Reason, "no established BGP session") {
		t.Errorf("without a session: %+v", st.Prefixes[0])
	}
	if st.Peers[0].State != "idle" || st.Peers[0].Uptime != "0s" {
		t.Errorf("peer without session: %+v", st.Peers[0])
	}
}

func TestAFailedSetIsRetried(t *testing.T) {
	h := newHarness(t, baseConfig)
	s := h.session()
	s.mu.Lock()
	s.failSet = errors.New("gobgp said no")
	s.mu.Unlock()
	h.allHealthy("r1", "r2", "r3")
	h.wantAnnounced(v4, false)
	if r := h.reason(v4); !strings.Contains(r, "gobgp said no") {
		t.Errorf("reason %q", r)
	}
	s.mu.Lock()
	s.failSet = nil
	s.mu.Unlock()
	h.advance(setRetry)
	h.wantAnnounced(v4, true)
}

func TestNewNeedsConfigAndStore(t *testing.T) {
	store, _ := state.New()
	if _, err := New(nil, Deps{Store: store}); err == nil {
		t.Error("nil config accepted")
	}
	cfg := parseConfig(t, baseConfig)
	if _, err := New(cfg.BGP, Deps{}); err == nil {
		t.Error("nil store accepted")
	}
	cfg.BGP.Peers[0].PasswordFile = t.TempDir() + "/missing"
	if _, err := New(cfg.BGP, Deps{Store: store}); err == nil || !strings.Contains(err.Error(), "password_file") {
		t.Errorf("missing password file: %v", err)
	}
	c, err := New(parseConfig(t, baseConfig).BGP, Deps{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Run: %v", err)
	}
	if st := c.status(); st.Running || len(st.Prefixes) != 2 || st.Prefixes[0].Reason != "bgp not running" {
		t.Errorf("status before Run: %+v", st)
	}
}
