package h2

import (
	"bytes"
	"io"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestStreamsBeyondMaxAreRefused(t *testing.T) {
	h := newHeld()
	l := startLab(t, Config{MaxStreams: 2}, h)
	r := l.dialRaw(t, []http2.Setting{})
	r.get(1, query(1))
	r.get(3, query(3))
	h.wait(t, 2)
	r.get(5, query(5))
	f := r.next()
	rst, ok := f.(*http2.RSTStreamFrame)
	if !ok || rst.StreamID != 5 || rst.ErrCode != http2.ErrCodeRefusedStream {
		t.Fatalf("got %v, want RST_STREAM REFUSED_STREAM on stream 5", f)
	}
	h.release()
	got := map[uint32]string{}
	for len(got) < 2 {
		f := r.next()
		if hf, ok := f.(*http2.HeadersFrame); ok {
			got[hf.StreamID] = r.status(f)
		}
	}
	if got[1] != "200" || got[3] != "200" {
		t.Fatalf("answers %v", got)
	}
	// The slots are free again.
	r.ping(1) // the server saw both streams end before stream 7
	r.get(7, query(7))
	h.wait(t, 1)
	if n := l.srv.Stats().Refused.Load(); n != 1 {
		t.Errorf("refused %d, want 1", n)
	}
	h.release()
}

func TestGoAwayAtMaxAgeStillDeliversAnswersInFlight(t *testing.T) {
	h := newHeld()
	l := startLab(t, Config{MaxConnAge: 300 * time.Millisecond}, h)
	r := l.dialRaw(t, []http2.Setting{})
	r.get(1, query(1))
	h.wait(t, 1)
	g := r.goAway()
	if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 1", g.ErrCode, g.LastStreamID)
	}
	// A stream after GOAWAY is not served; the one in flight still is.
	r.get(3, query(3))
	r.ping(1) // the server read stream 3 before answering this
	h.release()
	f := r.next()
	if r.status(f) != "200" || f.Header().StreamID != 1 {
		t.Fatalf("got %v, want the answer on stream 1", f)
	}
	d, ok := r.next().(*http2.DataFrame)
	if !ok || !bytes.Equal(d.Data(), query(1)) || !d.StreamEnded() {
		t.Fatalf("answer body %v", d)
	}
	r.ended()
	st := l.srv.Stats()
	if st.Requests.Load() != 1 || st.GoAways.Load() != 1 {
		t.Errorf("requests %d goaways %d, want 1 1", st.Requests.Load(), st.GoAways.Load())
	}
}

func TestMaxRequestsMovesClientToNewConnections(t *testing.T) {
	l := startLab(t, Config{MaxRequests: 3}, echo{})
	c := l.pooled(t)
	for i := 0; i < 10; i++ {
		resp, err := c.Get(l.url("/dns-query?dns=" + b64(query(uint16(i)))))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	st := l.srv.Stats()
	if st.Conns.Load() != 4 || st.GoAways.Load() < 3 || st.Requests.Load() != 10 {
		t.Errorf("conns %d goaways %d requests %d, want 4 >=3 10", st.Conns.Load(), st.GoAways.Load(), st.Requests.Load())
	}
}

func TestClientResetDropsTheLaterAnswer(t *testing.T) {
	h := newHeld()
	l := startLab(t, Config{}, h)
	r := l.dialRaw(t, []http2.Setting{})
	r.get(1, query(1))
	h.wait(t, 1)
	r.check(r.fr.WriteRSTStream(1, http2.ErrCodeCancel))
	eventually(t, "the reset to count", func() bool { return l.srv.Stats().Resets.Load() == 1 })
	h.release()
	if n := l.srv.Stats().Dropped.Load(); n != 1 {
		t.Errorf("dropped %d, want 1", n)
	}
	r.get(3, query(3))
	h.wait(t, 1)
	h.release()
	f := r.next()
	if f.Header().StreamID != 3 || r.status(f) != "200" {
		t.Fatalf("got %v, want the answer on stream 3 only", f)
	}
}

func TestStalledClientIsClosed(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stall func(r *raw)
	}{
		{"half a preface", func(r *raw) {}},
		{"header block without its end", func(r *raw) {
			r.check(r.fr.WriteSettings())
			r.check(r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte{0x82}, EndHeaders: false}))
		}},
		{"POST without its body", func(r *raw) {
			r.check(r.fr.WriteSettings())
			r.request(1, "POST", "/dns-query", false, "content-type", MediaType)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const timeout = 200 * time.Millisecond
			l := startLab(t, Config{ReadHeaderTimeout: timeout, IdleTimeout: time.Minute}, echo{})
			var r *raw
			if tc.name == "half a preface" {
				c := l.dialRawNoPreface(t)
				_, err := io.WriteString(c.c, http2.ClientPreface[:10])
				r = c
				r.check(err)
			} else {
				r = l.dialRaw(t, nil)
			}
			start := time.Now()
			tc.stall(r)
			r.ended()
			if el := time.Since(start); el < timeout {
				t.Errorf("closed after %v, before the %v timeout", el, timeout)
			}
			eventually(t, "the timeout to count", func() bool { return l.srv.Stats().Timeouts.Load() == 1 })
		})
	}
}

func TestIdleConnectionIsClosed(t *testing.T) {
	const idle = 200 * time.Millisecond
	l := startLab(t, Config{IdleTimeout: idle}, echo{})
	r := l.dialRaw(t, []http2.Setting{})
	r.get(1, query(1))
	if r.status(r.next()) != "200" {
		t.Fatal("no answer")
	}
	start := time.Now()
	r.ended()
	if el := time.Since(start); el < idle/2 {
		t.Errorf("closed after %v, idle timeout %v", el, idle)
	}
	eventually(t, "the timeout to count", func() bool { return l.srv.Stats().Timeouts.Load() == 1 })
}

func TestTinyStreamWindowIsHonoured(t *testing.T) {
	l := startLab(t, Config{}, echo{})
	r := l.dialRaw(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 5}})
	q := query(1)
	r.get(1, q)
	var body []byte
	f := r.next()
	if r.status(f) != "200" {
		t.Fatal("no answer")
	}
	for _, step := range []struct{ grant, want int }{{0, 5}, {10, 15}, {100, 29}} {
		grant := uint32(step.grant)
		if grant > 0 {
			r.check(r.fr.WriteWindowUpdate(1, grant))
		}
		for _, f := range r.ping(byte(grant)) {
			d, ok := f.(*dataCopy)
			if !ok || d.id != 1 {
				t.Fatalf("got %v, want DATA on stream 1", f)
			}
			body = append(body, d.data...)
		}
		if len(body) != step.want {
			t.Fatalf("after granting %d: %d body bytes, want %d", grant, len(body), step.want)
		}
	}
	q[2] |= 0x80
	if !bytes.Equal(body, q) {
		t.Fatalf("body %x, want %x", body, q)
	}
}

func TestConnectionWindowIsHonoured(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 40000)
	l := startLab(t, Config{}, handlerFunc(func(r *Request) { r.Respond(200, big, 0) }))
	// Streams may take 1 MiB; the connection keeps its initial 65535.
	r := l.dialRaw(t, []http2.Setting{{ID: http2.SettingInitialWindowSize, Val: 1 << 20}})
	r.get(1, query(1))
	r.get(3, query(3))
	n := map[uint32]int{}
	count := func(fs []http2.Frame) {
		for _, f := range fs {
			if d, ok := f.(*dataCopy); ok {
				n[d.id] += len(d.data)
			}
		}
	}
	count(r.ping(1))
	if n[1]+n[3] != 65535 {
		t.Fatalf("sent %d bytes on a 65535-byte connection window", n[1]+n[3])
	}
	r.check(r.fr.WriteWindowUpdate(0, 20000))
	count(r.ping(2))
	if n[1] != 40000 || n[3] != 40000 {
		t.Fatalf("after the update: %d and %d bytes, want 40000 each", n[1], n[3])
	}
}
