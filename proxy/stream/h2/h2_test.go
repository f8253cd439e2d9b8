package h2

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestGETAndPOSTAnswered(t *testing.T) {
	l := startLab(t, Config{}, echo{})
	c := l.client(t)
	q := query(0x1234)
	want := append([]byte(nil), q...)
	want[2] |= 0x80

	get, err := http.NewRequest("GET", l.url("/dns-query?dns="+b64(q)), nil)
	if err != nil {
		t.Fatal(err)
	}
	post, err := http.NewRequest("POST", l.url("/dns-query"), bytes.NewReader(q))
	if err != nil {
		t.Fatal(err)
	}
	post.Header.Set("Content-Type", MediaType)
	head, _ := http.NewRequest("HEAD", l.url("/dns-query?dns="+b64(q)), nil)
	for _, req := range []*http.Request{get, post, head} {
		t.Run(req.Method, func(t *testing.T) {
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
				t.Fatalf("status %d proto %s", resp.StatusCode, resp.Proto)
			}
			if ct := resp.Header.Get("Content-Type"); ct != MediaType {
				t.Errorf("content-type %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "max-age=300" {
				t.Errorf("cache-control %q", cc)
			}
			if resp.ContentLength != int64(len(want)) {
				t.Errorf("content-length %d, want %d", resp.ContentLength, len(want))
			}
			if req.Method == "HEAD" {
				want = nil
			}
			if !bytes.Equal(body, want) {
				t.Errorf("body %x, want %x", body, want)
			}
		})
	}
	if n := l.srv.Stats().Responses(200); n != 3 {
		t.Errorf("200 responses counted %d, want 3", n)
	}
	if n := l.srv.Stats().Conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestManyConcurrentStreamsOnOneConnection(t *testing.T) {
	// Answers come from other goroutines, out of order.
	h := handlerFunc(func(r *Request) { go r.Respond(200, r.Query, 0) })
	l := startLab(t, Config{MaxStreams: 250}, h)
	c := l.client(t)
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			q := query(uint16(i))
			var resp *http.Response
			var err error
			if i%2 == 0 {
				resp, err = c.Get(l.url("/dns-query?dns=" + b64(q)))
			} else {
				resp, err = c.Post(l.url("/dns-query"), MediaType, bytes.NewReader(q))
			}
			if err != nil {
				errs <- err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !bytes.Equal(body, q) {
				errs <- fmt.Errorf("query %d: status %d body %x", i, resp.StatusCode, body)
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := l.srv.Stats()
	if st.Conns.Load() != 1 || st.Requests.Load() != n || st.Responses(200) != n {
		t.Errorf("conns %d requests %d 200s %d, want 1 %d %d (%+v)", st.Conns.Load(), st.Requests.Load(), st.Responses(200), n, n, st)
	}
}

type handlerFunc func(*Request)

func (f handlerFunc) ServeDNS(r *Request) { f(r) }

func TestErrorStatuses(t *testing.T) {
	l := startLab(t, Config{}, echo{})
	c := l.client(t)
	q := b64(query(1))
	for _, tc := range []struct {
		name, method, path, ctype, body string
		want                            int
	}{
		{"missing dns parameter", "GET", "/dns-query", "", "", 400},
		{"empty dns parameter", "GET", "/dns-query?dns=", "", "", 400},
		{"dns parameter not base64url", "GET", "/dns-query?dns=!!!", "", "", 400},
		{"padded base64url accepted", "GET", "/dns-query?dns=" + q + "==", "", "", 200},
		{"other parameters around dns", "GET", "/dns-query?ct=x&dns=" + q + "&z=1", "", "", 200},
		{"wrong path", "GET", "/other?dns=" + q, "", "", 404},
		{"wrong path POST", "POST", "/dns-query/x", MediaType, "abc", 404},
		{"other method", "PUT", "/dns-query", MediaType, "abc", 405},
		{"wrong content type", "POST", "/dns-query", "text/plain", "abc", 415},
		{"no content type", "POST", "/dns-query", "", "abc", 415},
		{"content type with parameter", "POST", "/dns-query", MediaType + "; charset=x", "abcdefghijklmnop", 200},
		{"empty body", "POST", "/dns-query", MediaType, "", 400},
		{"body larger than a DNS message", "POST", "/dns-query", MediaType, strings.Repeat("x", 65536), 413},
		{"largest body accepted", "POST", "/dns-query", MediaType, strings.Repeat("x", 65535), 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.method == "POST" || tc.method == "PUT" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, l.url(tc.path), body)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want == 405 && resp.Header.Get("Allow") != "GET, HEAD, POST" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
			if tc.want == 200 && tc.method == "POST" && string(got[3:]) != tc.body[3:] {
				t.Errorf("body not echoed")
			}
		})
	}
	st := l.srv.Stats()
	if st.Responses(400) != 4 || st.Responses(415) != 2 || st.Responses(413) != 1 || st.Responses(404) != 2 || st.Responses(405) != 1 {
		t.Errorf("counted 400:%d 415:%d 413:%d 404:%d 405:%d", st.Responses(400), st.Responses(415),
			st.Responses(413), st.Responses(404), st.Responses(405))
	}
}

// TestInlineWrites runs the protocol's tests again on connections whose
// writes never wait, where a responding goroutine writes answers itself
// and the writer goroutine only what is left (control frames, answers
// queued while another wrote): the write token must keep frames whole and
// in order, and graceful ends, resets, windows and bounds as they were.
func TestInlineWrites(t *testing.T) {
	labInline = true
	defer func() { labInline = false }()
	for name, test := range map[string]func(*testing.T){
		"GETAndPOSTAnswered":                   TestGETAndPOSTAnswered,
		"ManyConcurrentStreamsOnOneConnection": TestManyConcurrentStreamsOnOneConnection,
		"ErrorStatuses":                        TestErrorStatuses,
		"StreamsBeyondMaxAreRefused":           TestStreamsBeyondMaxAreRefused,
		"GoAwayAtMaxAgeStillDeliversAnswers":   TestGoAwayAtMaxAgeStillDeliversAnswersInFlight,
		"MaxRequestsMovesClient":               TestMaxRequestsMovesClientToNewConnections,
		"ClientResetDropsTheLaterAnswer":       TestClientResetDropsTheLaterAnswer,
		"TinyStreamWindowIsHonoured":           TestTinyStreamWindowIsHonoured,
		"ConnectionWindowIsHonoured":           TestConnectionWindowIsHonoured,
		"PingAndSettingsAreAcknowledged":       TestPingAndSettingsAreAcknowledged,
		"ProtocolErrorsEndTheConnection":       TestProtocolErrorsEndTheConnection,
		"MalformedRequestsResetTheStream":      TestMalformedRequestsResetTheStream,
	} {
		t.Run(name, test)
	}
}
