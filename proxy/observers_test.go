package proxy

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/state"
)

func TestTopSampleFollowsReload(t *testing.T) {
	load := func(yml string) *config.Config {
		cfg, err := config.Parse("t.yaml", []byte(yml+"pools: {default: {backends: [{name: r1, address: \"127.0.0.1:5301\"}]}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(load(""), Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Top(1); !got.Enabled || got.Sample != 8 {
		t.Fatalf("default: %+v", got)
	}
	p.Reload(load("top: {sample: 2}\n"))
	if got := p.Top(1); !got.Enabled || got.Sample != 2 {
		t.Errorf("after a reload to 2: %+v", got)
	}
	p.Reload(load("top: {sample: 0}\n"))
	if got := p.Top(1); got.Enabled {
		t.Errorf("after a reload to 0: %+v", got)
	}
}

// TestRunJoinsTheObservers stops a proxy whose query log writes to a file:
// by the time Run returns, the writer has closed its stream, so nothing
// the observers started outlives the Run that started them.
func TestRunJoinsTheObservers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.dnstap")
	cfg, err := config.Parse("t.yaml", []byte(`listen: [{address: "127.0.0.1:0"}]
query_log: {dnstap: {file: `+path+`}}
top: {sample: 1}
pools: {default: {backends: [{name: r1, address: "127.0.0.1:9"}]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := store.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, Deps{Store: store, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if p.QueryLogStats().Connected {
		t.Fatal("New started the query log writer")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitDesc(t, "the query log writer to start", 5*time.Second, func() bool { return p.QueryLogStats().Connected })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
	}
	if s := p.QueryLogStats(); !s.Enabled || s.Connected {
		t.Errorf("after Run returned: %+v, want the writer stopped and its stream closed", s)
	}
}
