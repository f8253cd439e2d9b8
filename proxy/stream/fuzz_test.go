package stream

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// FuzzTCPReader feeds arbitrary bytes, as one client's TCP stream, to the
// TCP front end's length-prefixed reader (TCP.handle) over a real loopback
// connection, then half-closes. The handler answers every frame of at least
// a header at once. Properties: no panic; handle returns within 2 s of the
// half-close; every frame sent back is a DNS response with QR set; there are
// exactly as many of them as whole frames of a header or more sent before
// the first zero-length one (among the first 64, the per-connection bound).
func FuzzTCPReader(f *testing.F) {
	q := dnstest.Pack(f, dnstest.Query("www.example.", dns.TypeA))
	frame := append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	f.Add(frame)
	f.Add(append(append([]byte{}, frame...), frame...))
	f.Add([]byte{0, 0})
	f.Add([]byte{0xFF, 0xFF, 1, 2, 3})
	f.Add(frame[:len(frame)-1])
	f.Add(append(append([]byte{}, frame...), 0, 12, 0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0))

	lim := config.TCPLimits{MaxConns: 16, MaxConnsPerClient: 16, IdleTimeout: 2 * time.Second,
		MaxConnTime: time.Minute, MaxInflightPerConn: 4, MaxQueriesPerConn: 64}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	front := NewTCP(ln, TCPConfig{Limits: lim}, Deps{Handler: &echo{}})

	f.Fuzz(func(t *testing.T, stream []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			end := time.Now().Add(front.lim.MaxConnTime)
			c := newNBConn(server, front.lim.IdleTimeout, end, front.deps.SlowReaders)
			front.handle(c, netip.MustParseAddrPort("127.0.0.1:5353"), end)
			server.Close()
		}()
		go func() {
			_, _ = client.Write(stream)
			_ = client.(*net.TCPConn).CloseWrite()
		}()
		want := 0
		for b, whole := stream, 0; len(b) >= 2 && whole < 64; whole++ {
			l := int(binary.BigEndian.Uint16(b))
			if l == 0 || len(b) < 2+l {
				break
			}
			if l >= dnswire.HeaderLen {
				want++
			}
			b = b[2+l:]
		}
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		frames := 0
		for {
			var lb [2]byte
			if _, err := io.ReadFull(client, lb[:]); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatal("the connection was not closed within 5 s of the half-close")
				}
				break
			}
			msg := make([]byte, binary.BigEndian.Uint16(lb[:]))
			if _, err := io.ReadFull(client, msg); err != nil {
				t.Fatalf("answer frame cut: %v", err)
			}
			frames++
			if len(msg) < dnswire.HeaderLen || msg[2]&0x80 == 0 {
				t.Fatalf("answer is not a DNS response: %x", msg)
			}
		}
		if frames != want {
			t.Fatalf("%d answers, want %d", frames, want)
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("handle did not return after the client closed")
		}
	})
}
