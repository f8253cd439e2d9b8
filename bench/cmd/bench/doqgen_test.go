package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/quic-go/quic-go"
)

// TestDoqGen drives runDoqGen against a DoQ answerer in the test (a
// stand-in for the generator's logic only; the bench's runs are against
// anyfront): every query is answered and checked, each comes with ID 0 on
// a stream of its own, the generator keeps to its connections with
// several streams in flight on each but never more than spec.outstanding,
// and when the server closes a connection it opens another and loses
// nothing.
func TestDoqGen(t *testing.T) {
	t.Run("keep", func(t *testing.T) { testDoqGen(t, 0) })
	t.Run("server closes", func(t *testing.T) { testDoqGen(t, 25) })
}

func testDoqGen(t *testing.T, closeAfter int) {
	cert := testlab.SelfSignedCert(t, t.TempDir(), "doq")
	kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: []string{"doq"}},
		&quic.Config{MaxIncomingStreams: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	inflight, peak, served := map[*quic.Conn]int{}, map[*quic.Conn]int{}, map[*quic.Conn]int{}
	badID := 0
	go func() {
		for {
			conn, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := conn.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() {
						b, err := io.ReadAll(s)
						if err != nil || len(b) < 14 || int(binary.BigEndian.Uint16(b)) != len(b)-2 {
							s.CancelWrite(0)
							return
						}
						q := b[2:]
						mu.Lock()
						if q[0] != 0 || q[1] != 0 {
							badID++
						}
						inflight[conn]++
						peak[conn] = max(peak[conn], inflight[conn])
						mu.Unlock()
						time.Sleep(10 * time.Millisecond) // answers overlap on each connection
						q[2] |= 0x80                      // the query itself, as its answer
						// Counted out before the answer leaves: the client may
						// ask its next query the moment it has it.
						mu.Lock()
						inflight[conn]--
						served[conn]++
						last := closeAfter > 0 && served[conn] == closeAfter
						mu.Unlock()
						_, _ = s.Write(b)
						s.Close()
						if last {
							time.Sleep(20 * time.Millisecond) // let the answers leave
							_ = conn.CloseWithError(0, "enough")
						}
					}()
				}
			}()
		}
	}()

	data := filepath.Join(t.TempDir(), "data.txt")
	if err := os.WriteFile(data, []byte("a.example. A\nb.example. AAAA\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := loadSpec{server: ln.Addr().String(), data: data, qps: 2000, dur: 300 * time.Millisecond,
		clients: 2, outstanding: 4, mode: "doq", gen: "go"}
	r, err := runLoad(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if badID != 0 {
		t.Errorf("%d queries with a non-zero ID (RFC 9250 4.2.1 wants 0)", badID)
	}
	// Closing a connection may cut the streams in flight on it: a few are
	// lost then, each a query a real client would ask again.
	if closeAfter == 0 && (r.sum.Sent < 100 || r.sum.Completed != r.sum.Sent || r.lost != 0) {
		t.Errorf("sent %d, answered %d, lost %d (failed %d, mismatched %d; %v): want every one answered",
			r.sum.Sent, r.sum.Completed, r.lost, r.failed, r.mismatched, r.firstErr)
	}
	if closeAfter > 0 && (r.sum.Sent < 100 || r.sum.Completed < r.sum.Sent*9/10 || r.mismatched != 0) {
		t.Errorf("sent %d, answered %d (failed %d, mismatched %d; %v) with the server closing connections: want 90%% answered",
			r.sum.Sent, r.sum.Completed, r.failed, r.mismatched, r.firstErr)
	}
	if closeAfter == 0 && len(peak) != 2 {
		t.Errorf("%d connections used, want spec.clients 2", len(peak))
	}
	// A closing connection answers its streams in flight and those opened
	// before the close reached the client: under twice closeAfter each.
	if closeAfter > 0 && len(peak) < r.sum.Completed/(2*closeAfter) {
		t.Errorf("%d connections for %d answers: the generator did not reconnect", len(peak), r.sum.Completed)
	}
	for _, p := range peak {
		if p > 4 || (p < 2 && closeAfter == 0) {
			t.Errorf("a connection had at most %d streams in flight, want 2..4 (pipelined, bounded by spec.outstanding)", p)
		}
	}
}
