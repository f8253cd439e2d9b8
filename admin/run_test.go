package admin

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
)

func TestRunStopsOnCancel(t *testing.T) {
	s, err := New(config.Admin{Listen: "127.0.0.1:0"}, Deps{Store: newStore(t), Live: &fakeLive{}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	addr := s.Addr().String()
	// An idle keep-alive connection must not hold shutdown up.
	client := &http.Client{}
	defer client.CloseIdleConnections()
	res, err := client.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz: %d", res.StatusCode)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if d := time.Since(start); d > shutdownGrace/2 {
			t.Errorf("shutdown took %v with only an idle connection open", d)
		}
	case <-time.After(shutdownGrace + 5*time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still listening after Run returned")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("a second Run was accepted")
	}
}

func TestRunReportsListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := New(config.Admin{Listen: ln.Addr().String()}, Deps{Store: newStore(t), Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Run(context.Background())
	want := "admin.listen: listen tcp " + ln.Addr().String() + ": bind: address already in use"
	if err == nil || err.Error() != want {
		t.Fatalf("Run = %v, want %q (the address once)", err, want)
	}
	<-s.Ready() // closed on failure too, so waiters do not hang
}

func TestReloadRotatesToken(t *testing.T) {
	path := writeToken(t, "old-token")
	s, url := start(t, path, Deps{})
	if res := do(t, "POST", url+"/api/v1/node/drain", "old-token", ""); res.code != 200 {
		t.Fatalf("old token before rotation: %d", res.code)
	}
	if err := os.WriteFile(path, []byte("new-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(config.Admin{Listen: "127.0.0.1:0", TokenFile: path}); err != nil {
		t.Fatal(err)
	}
	if res := do(t, "POST", url+"/api/v1/node/drain", "old-token", ""); res.code != 401 {
		t.Errorf("old token after rotation: %d", res.code)
	}
	if res := do(t, "POST", url+"/api/v1/node/drain", "new-token", ""); res.code != 200 {
		t.Errorf("new token: %d", res.code)
	}
	t.Run("an unreadable new token file keeps the old token", func(t *testing.T) {
		if err := s.Reload(config.Admin{Listen: "127.0.0.1:0", TokenFile: "/nonexistent/token"}); err == nil {
			t.Fatal("Reload accepted a missing file")
		}
		if res := do(t, "POST", url+"/api/v1/node/drain", "new-token", ""); res.code != 200 {
			t.Errorf("token after a failed reload: %d", res.code)
		}
	})
	t.Run("removing token_file disables mutating calls", func(t *testing.T) {
		if err := s.Reload(config.Admin{Listen: "127.0.0.1:0"}); err != nil {
			t.Fatal(err)
		}
		if res := do(t, "POST", url+"/api/v1/node/drain", "new-token", ""); res.code != 403 {
			t.Errorf("after removing token_file: %d", res.code)
		}
	})
}

func TestRunSamplesQPS(t *testing.T) {
	live := &fakeLive{}
	s, err := New(config.Admin{Listen: "127.0.0.1:0"}, Deps{Store: newStore(t), Live: live, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	s.rateEvery = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-s.Ready()
	url := "http://" + s.Addr().String()

	// Feed the counter until the API reports a rate, with a deadline
	// rather than a fixed sleep.
	var q uint64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		q += 10
		live.set("r1", BackendLive{Queries: q})
		var got []BackendView
		do(t, "GET", url+"/api/v1/backends", "", "").json(t, &got)
		for _, b := range got {
			if b.Name == "r1" && b.QPS > 0 {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("qps never became positive")
}

// The dashboard's hour of samples fills while the server runs, whether
// anyone reads it or not, and its sampler ends with Run.
func TestRunKeepsStatsWithoutReaders(t *testing.T) {
	s, err := New(config.Admin{Listen: "127.0.0.1:0"}, Deps{Store: newStore(t), Live: &fakeLive{}, Log: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	<-s.Ready()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.stats.mu.Lock()
		n := s.stats.n
		s.stats.mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d samples after 5s with no reader", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	s.stats.mu.Lock()
	running := s.stats.running
	s.stats.mu.Unlock()
	if running {
		t.Error("the sampler still runs after Run returned")
	}
}
