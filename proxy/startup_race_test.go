package proxy

import (
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/internal/testlab"
)

// TestScrapeDuringStartup scrapes the collector in a loop while Run opens
// the listeners and builds its shards: a Prometheus scrape during start-up
// must not read what Run is assigning. It proves something under -race
// (make test runs this package so), where the old code failed.
func TestScrapeDuringStartup(t *testing.T) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	scrapes := 0
	port, err := testlab.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	yml := fmt.Sprintf("listen: [{address: %q}]\npools:\n  default:\n    backends: [{name: r1, address: \"127.0.0.1:9\"}]\n", addr)
	l := runConfig(t, addr, yml, func(p *Proxy) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(p.Collector())
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := reg.Gather(); err != nil {
					t.Errorf("gather: %v", err)
					return
				}
				scrapes++
			}
		})
	})
	close(stop)
	wg.Wait()
	if scrapes == 0 || l.p.started.Load() == nil {
		t.Fatalf("%d scrapes; started published: %v", scrapes, l.p.started.Load() != nil)
	}
}
