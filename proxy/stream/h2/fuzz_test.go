package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzServeConn feeds arbitrary bytes after the client preface to a
// connection: whatever they are, the server must neither panic nor hang,
// and must end the connection when the client goes away.
func FuzzServeConn(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	srv, err := New(Config{ReadHeaderTimeout: time.Second, IdleTimeout: time.Second, MaxStreams: 4},
		handlerFunc(func(r *Request) {
			if len(r.Query)%2 == 0 {
				r.Respond(200, r.Query, 1)
			} else {
				go r.Fail(400)
			}
		}))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		client, server := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- srv.ServeConn(context.Background(), server) }()
		go io.Copy(io.Discard, client)
		_, _ = client.Write(append([]byte(http2.ClientPreface), in...))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("ServeConn did not return after the client closed")
		}
	})
}

// fuzzSeeds are frame sequences a client sends, valid and not.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	build := func(write func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)) {
		var out, hb bytes.Buffer
		fr := http2.NewFramer(&out, nil)
		fr.AllowIllegalWrites = true
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 3})
		write(fr, hpack.NewEncoder(&hb), &hb)
		seeds = append(seeds, out.Bytes())
	}
	req := func(enc *hpack.Encoder, method, path string, extra ...string) {
		all := append([]string{":method", method, ":scheme", "https", ":path", path}, extra...)
		for i := 0; i+1 < len(all); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: all[i], Value: all[i+1]})
		}
	}
	build(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		req(enc, "GET", "/dns-query?dns="+b64(query(1)))
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true})
		_ = fr.WriteWindowUpdate(1, 100)
		_ = fr.WritePing(false, [8]byte{1})
	})
	build(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		req(enc, "POST", "/dns-query", "content-type", MediaType, "content-length", "29")
		b := hb.Bytes()
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:4], EndHeaders: false})
		_ = fr.WriteContinuation(3, true, b[4:])
		_ = fr.WriteDataPadded(3, false, query(3)[:10], []byte{0, 0})
		_ = fr.WriteData(3, true, query(3)[10:])
		_ = fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	build(func(fr *http2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		req(enc, "DELETE", "/x")
		_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true, Priority: http2.PriorityParam{StreamDep: 5}})
		_ = fr.WritePriority(7, http2.PriorityParam{StreamDep: 1, Weight: 3})
		_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	build(func(fr *http2.Framer, _ *hpack.Encoder, _ *bytes.Buffer) {
		_ = fr.WriteRawFrame(0x42, 0, 9, []byte("unknown"))
		_ = fr.WriteSettingsAck()
		_ = fr.WriteWindowUpdate(0, 1<<31-1)
	})
	return seeds
}
