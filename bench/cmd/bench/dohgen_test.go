package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestDohGenPipelines drives runDohGen against an HTTP/2 DoH answerer in
// the test (a stand-in for the generator's logic only; the bench's real
// runs are against anyfront and dnsdist): every query is answered and
// checked, the generator keeps to its connections, and it has more than
// one stream in flight on a connection (what dnsperf 2.10 cannot do
// without losing answers) but never more than -doh-streams.
func TestDohGenPipelines(t *testing.T) {
	t.Run("keep", func(t *testing.T) { testDohGen(t, 0) })
	// The server closes each connection after 25 answers (GOAWAY, as a
	// proxy's queries-per-connection limit does): the generator opens new
	// ones and loses nothing.
	t.Run("goaway", func(t *testing.T) { testDohGen(t, 25) })
}

func testDohGen(t *testing.T, closeAfter int) {
	var mu sync.Mutex
	inflight, peak, served := map[string]int{}, map[string]int{}, map[string]int{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != dohPath || r.Header.Get("Content-Type") != "application/dns-message" || r.ProtoMajor != 2 {
			http.Error(w, "want an HTTP/2 POST of application/dns-message to "+dohPath, http.StatusBadRequest)
			return
		}
		q, err := io.ReadAll(r.Body)
		if err != nil || len(q) < 12 {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		mu.Lock()
		inflight[r.RemoteAddr]++
		peak[r.RemoteAddr] = max(peak[r.RemoteAddr], inflight[r.RemoteAddr])
		mu.Unlock()
		time.Sleep(10 * time.Millisecond) // answers overlap on each connection
		mu.Lock()
		inflight[r.RemoteAddr]--
		served[r.RemoteAddr]++
		if closeAfter > 0 && served[r.RemoteAddr] == closeAfter {
			w.Header().Set("Connection", "close") // net/http's HTTP/2 server sends GOAWAY
		}
		mu.Unlock()
		q[2] |= 0x80 // the query itself, as its answer
		w.Header().Set("Content-Type", "application/dns-message")
		_, _ = w.Write(q)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{}
	srv.StartTLS()
	defer srv.Close()

	data := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(data, []byte("a.example. A\nb.example. AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := loadSpec{server: srv.Listener.Addr().String(), data: data, qps: 2000, dur: 300 * time.Millisecond,
		clients: 2, outstanding: 4, mode: "doh", gen: "go"}
	r, err := runLoad(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if r.sum.Sent < 100 || r.sum.Completed != r.sum.Sent || r.lost != 0 {
		t.Errorf("sent %d, answered %d, lost %d (failed %d, mismatched %d; %v): want every one answered",
			r.sum.Sent, r.sum.Completed, r.lost, r.failed, r.mismatched, r.firstErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if closeAfter == 0 && len(peak) != 2 {
		t.Errorf("%d connections used, want -doh-conns 2", len(peak))
	}
	// A closing connection still answers the streams already in flight
	// on it: closeAfter + spec.outstanding answers each at most.
	if most := closeAfter + spec.outstanding; closeAfter > 0 && len(peak) < r.sum.Sent/most {
		t.Errorf("%d connections for %d queries, %d each at most: the generator did not reconnect", len(peak), r.sum.Sent, most)
	}
	for addr, p := range peak {
		if p > 4 || (p < 2 && closeAfter == 0) {
			t.Errorf("connection %s: at most %d streams in flight, want 2..4 (pipelined, bounded by -doh-streams)", addr, p)
		}
	}
}
