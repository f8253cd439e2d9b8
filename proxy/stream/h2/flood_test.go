package h2

import (
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestPingFloodWithoutReadingIsClosed: a client that sends PINGs and never
// reads their acks makes the writer stall once the socket buffers fill;
// the acks waiting then pass maxQueued and the connection is closed at
// once, well before the write timeout would have ended it.
func TestPingFloodWithoutReadingIsClosed(t *testing.T) {
	l := startLab(t, Config{}, echo{})
	r := l.dialRaw(t, []http2.Setting{})
	start := time.Now()
	_ = r.c.SetWriteDeadline(start.Add(DefaultWriteTimeout / 2))
	var err error
	sent := 0
	for ; sent < 2_000_000 && err == nil; sent++ {
		err = r.fr.WritePing(false, [8]byte{byte(sent)})
	}
	if err == nil {
		t.Fatalf("%d PINGs written without reading an ack, and the connection still open", sent)
	}
	if took := time.Since(start); took >= DefaultWriteTimeout/2 {
		t.Fatalf("closed only after %v (%v): the write timeout, not the flood bound", took, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for l.srv.Stats().Floods.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := l.srv.Stats().Floods.Load(); got != 1 {
		t.Errorf("floods counted %d, want 1 (after %d PINGs, %v)", got, sent, err)
	}
}
