package h2

import (
	"strings"
	"testing"

	"golang.org/x/net/http2"
)

func TestPingAndSettingsAreAcknowledged(t *testing.T) {
	l := startLab(t, Config{}, echo{})
	r := l.dialRaw(t, nil)
	r.check(r.fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0}))
	sawServerSettings, sawAck := false, false
	for !sawAck || !sawServerSettings {
		f, err := r.fr.ReadFrame()
		r.check(err)
		if s, ok := f.(*http2.SettingsFrame); ok {
			if s.IsAck() {
				sawAck = true
			} else if v, ok := s.Value(http2.SettingMaxConcurrentStreams); ok && v == DefaultMaxStreams {
				sawServerSettings = true
			}
		}
	}
	if r.ping(42) != nil {
		t.Error("frames before the PING ack")
	}
	// A zero header table: the answer's headers still decode.
	r.dec.SetMaxDynamicTableSize(0)
	r.get(1, query(1))
	if r.status(r.next()) != "200" {
		t.Error("no answer after a zero header table")
	}
}

func TestProtocolErrorsEndTheConnection(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(r *raw)
		want http2.ErrCode
	}{
		{"first frame not SETTINGS", func(r *raw) { r.check(r.fr.WritePing(false, [8]byte{})) }, http2.ErrCodeProtocol},
		{"HEADERS on an even stream", func(r *raw) { r.get(2, query(1)) }, http2.ErrCodeProtocol},
		{"stream ids going down", func(r *raw) { r.get(5, query(1)); r.get(3, query(1)) }, http2.ErrCodeProtocol},
		{"DATA on an idle stream", func(r *raw) { r.check(r.fr.WriteData(9, true, []byte("x"))) }, http2.ErrCodeProtocol},
		{"RST_STREAM on an idle stream", func(r *raw) { r.check(r.fr.WriteRSTStream(9, http2.ErrCodeCancel)) }, http2.ErrCodeProtocol},
		{"CONTINUATION without HEADERS", func(r *raw) { r.check(r.fr.WriteContinuation(1, true, []byte{0x82})) }, http2.ErrCodeProtocol},
		{"PUSH_PROMISE from a client", func(r *raw) {
			r.check(r.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, BlockFragment: []byte{0x82}, EndHeaders: true}))
		}, http2.ErrCodeProtocol},
		{"frame over MAX_FRAME_SIZE", func(r *raw) {
			r.request(1, "POST", "/dns-query", false, "content-type", MediaType)
			// The server may close on reading the frame's header, before
			// the rest is written: the GOAWAY is what counts.
			_ = r.fr.WriteData(1, true, make([]byte, 20000))
		}, http2.ErrCodeFrameSize},
		{"bad HPACK", func(r *raw) {
			r.check(r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff}, EndHeaders: true}))
		}, http2.ErrCodeCompression},
		{"connection window overflow", func(r *raw) {
			r.check(r.fr.WriteWindowUpdate(0, 1<<31-1))
		}, http2.ErrCodeFlowControl},
		{"stream window overflow", func(r *raw) {
			r.request(1, "POST", "/dns-query", false, "content-type", MediaType)
			r.check(r.fr.WriteWindowUpdate(1, 1<<31-1))
		}, 0},
		{"bad MAX_FRAME_SIZE", func(r *raw) {
			r.check(r.fr.WriteSettings(http2.Setting{ID: http2.SettingMaxFrameSize, Val: 100}))
		}, http2.ErrCodeProtocol},
		{"PING on a stream", func(r *raw) {
			r.check(r.fr.WriteRawFrame(http2.FramePing, 0, 1, make([]byte, 8)))
		}, http2.ErrCodeProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startLab(t, Config{}, echo{})
			var r *raw
			if strings.HasPrefix(tc.name, "first frame") {
				r = l.dialRaw(t, nil)
			} else {
				r = l.dialRaw(t, []http2.Setting{})
			}
			tc.send(r)
			if tc.want == 0 {
				// A stream error: that stream is reset, the connection lives.
				f := r.next()
				rst, ok := f.(*http2.RSTStreamFrame)
				if !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeFlowControl {
					t.Fatalf("got %v, want RST_STREAM FLOW_CONTROL_ERROR on stream 1", f)
				}
				r.get(3, query(3))
				if r.status(r.next()) != "200" {
					t.Fatal("connection unusable after a stream error")
				}
				return
			}
			g := r.goAway()
			if g.ErrCode != tc.want {
				t.Fatalf("GOAWAY %v, want %v", g.ErrCode, tc.want)
			}
			r.ended()
			if n := l.srv.Stats().ProtocolErrors.Load(); n != 1 {
				t.Errorf("protocol errors %d, want 1", n)
			}
		})
	}
}

func TestMalformedRequestsResetTheStream(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields []string
	}{
		{"upper-case field name", []string{"Content-Type", MediaType}},
		{"connection-specific field", []string{"connection", "close"}},
		{"pseudo field after a regular one", []string{"accept", "*/*", ":foo", "x"}},
		{"unknown pseudo field", []string{":protocol", "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := startLab(t, Config{}, echo{})
			r := l.dialRaw(t, []http2.Setting{})
			r.request(1, "GET", "/dns-query?dns="+b64(query(1)), true, tc.fields...)
			f := r.next()
			rst, ok := f.(*http2.RSTStreamFrame)
			if !ok || rst.StreamID != 1 || rst.ErrCode != http2.ErrCodeProtocol {
				t.Fatalf("got %v, want RST_STREAM PROTOCOL_ERROR", f)
			}
			r.get(3, query(3))
			if f := r.next(); f.Header().StreamID != 3 || r.status(f) != "200" {
				t.Fatalf("got %v, want an answer on stream 3", f)
			}
		})
	}
	t.Run("header list over the limit gets 431", func(t *testing.T) {
		l := startLab(t, Config{}, echo{})
		r := l.dialRaw(t, []http2.Setting{})
		r.request(1, "GET", "/dns-query?dns="+b64(query(1)), false, "x-pad", strings.Repeat("a", 8000), "x-pad2", strings.Repeat("b", 9000))
		if s := r.status(r.next()); s != "431" {
			t.Fatalf("status %s, want 431", s)
		}
	})
}
