package h2

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// raw is a hand-driven HTTP/2 client on the lab's TLS port, for what a
// well-behaved client never does: stalls, resets, tiny windows, bad frames.
type raw struct {
	t    testing.TB
	c    *tls.Conn
	fr   *http2.Framer
	enc  *hpack.Encoder
	hbuf bytes.Buffer
	dec  *hpack.Decoder
}

// dialRaw connects and sends the preface; with settings non-nil it sends
// them as the first SETTINGS frame.
func (l *lab) dialRaw(t testing.TB, settings []http2.Setting) *raw {
	t.Helper()
	c, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: l.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c, fr: http2.NewFramer(c, c), dec: hpack.NewDecoder(4096, nil)}
	r.enc = hpack.NewEncoder(&r.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if settings != nil {
		r.check(r.fr.WriteSettings(settings...))
	}
	return r
}

func (r *raw) check(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

// request sends a HEADERS frame with the given fields after the usual
// pseudo fields (fields are name, value pairs).
func (r *raw) request(id uint32, method, path string, endStream bool, fields ...string) {
	r.t.Helper()
	r.hbuf.Reset()
	all := append([]string{":method", method, ":scheme", "https", ":authority", "localhost", ":path", path}, fields...)
	for i := 0; i+1 < len(all); i += 2 {
		r.check(r.enc.WriteField(hpack.HeaderField{Name: all[i], Value: all[i+1]}))
	}
	r.check(r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndStream: endStream, EndHeaders: true}))
}

// get sends a complete GET for q on stream id.
func (r *raw) get(id uint32, q []byte) {
	r.t.Helper()
	r.request(id, "GET", "/dns-query?dns="+b64(q), true)
}

// next reads the next frame other than SETTINGS and WINDOW_UPDATE; nil at
// the end of the connection.
func (r *raw) next() http2.Frame {
	r.t.Helper()
	r.check(r.c.SetReadDeadline(time.Now().Add(5 * time.Second)))
	for {
		f, err := r.fr.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r.t.Fatal("no frame from the server within 5s")
		}
		r.check(err)
		switch f.(type) {
		case *http2.SettingsFrame, *http2.WindowUpdateFrame:
			continue
		}
		return f
	}
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// status decodes a response HEADERS frame's :status.
func (r *raw) status(f http2.Frame) string {
	r.t.Helper()
	h, ok := f.(*http2.HeadersFrame)
	if !ok {
		r.t.Fatalf("got %v, want HEADERS", f)
	}
	fields, err := r.dec.DecodeFull(h.HeaderBlockFragment())
	r.check(err)
	for _, hf := range fields {
		if hf.Name == ":status" {
			return hf.Value
		}
	}
	r.t.Fatal("no :status")
	return ""
}

// goAway reads until a GOAWAY and returns it, then expects the
// connection's end.
func (r *raw) goAway() *http2.GoAwayFrame {
	r.t.Helper()
	for {
		f := r.next()
		if f == nil {
			r.t.Fatal("connection ended without GOAWAY")
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			return g
		}
	}
}

// ended expects the connection to end (after any frames).
func (r *raw) ended() {
	r.t.Helper()
	for f := r.next(); f != nil; f = r.next() {
	}
}

// ping sends a PING and reads frames until its ack, returning what came
// before it: a barrier proving the server wrote nothing else meanwhile.
func (r *raw) ping(data byte) []http2.Frame {
	r.t.Helper()
	r.check(r.fr.WritePing(false, [8]byte{data}))
	var before []http2.Frame
	for {
		f := r.next()
		if f == nil {
			r.t.Fatal("connection ended before PING ack")
		}
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data[0] == data {
			return before
		}
		before = append(before, copyFrame(f))
	}
}

// copyFrame keeps what tests look at from a frame the framer will reuse.
func copyFrame(f http2.Frame) http2.Frame {
	switch f := f.(type) {
	case *http2.DataFrame:
		return &dataCopy{id: f.StreamID, data: append([]byte(nil), f.Data()...), end: f.StreamEnded()}
	}
	return f
}

type dataCopy struct {
	http2.Frame
	id   uint32
	data []byte
	end  bool
}

// dialRawNoPreface connects without sending anything.
func (l *lab) dialRawNoPreface(t testing.TB) *raw {
	t.Helper()
	c, err := tls.Dial("tcp", l.addr, &tls.Config{RootCAs: l.pool, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &raw{t: t, c: c, fr: http2.NewFramer(c, c), dec: hpack.NewDecoder(4096, nil)}
	r.enc = hpack.NewEncoder(&r.hbuf)
	return r
}
