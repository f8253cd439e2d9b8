package h2

import (
	"encoding/base64"
	"net"
	"net/url"
	"strings"
	"sync"
)

// Request is one DoH request. Its fields are valid until Respond or Fail
// returns; the Request is reused after that.
type Request struct {
	// Method is GET, HEAD or POST.
	Method string
	// Path is the request's path without its query string.
	Path string
	// Query is the DNS message: the decoded ?dns= parameter of a GET, the
	// body of a POST.
	Query []byte
	// Remote is the client's address (the connection's RemoteAddr), Local
	// the address it connected to (its LocalAddr).
	Remote, Local net.Addr

	c  *conn
	id uint32
	// buf holds Query; out holds the response body. Both are reused.
	buf, out []byte

	// State below is guarded by c.mu.
	status   int
	maxAge   uint32
	allow    bool   // 405: send an Allow header
	sendWin  int32  // peer's flow-control window for this stream
	recvWin  int32  // our window for the client's DATA
	recvAck  int32  // DATA received and not yet given back by WINDOW_UPDATE
	sent     int    // body bytes written
	hdrSent  bool   // HEADERS written
	reset    bool   // the stream is gone: drop the answer
	answered bool   // Respond or Fail was called
	inflight bool   // in c.streams, counted against MaxStreams
	bodyOpen bool   // POST whose body is still arriving
	early    bool   // answered before the client ended its half of the stream
	head     bool   // HEAD: headers only
	blocked  bool   // in c.blocked, waiting for window
	ctype    string // POST content-type
	clen     int64  // content-length, -1 when absent
}

var reqPool = sync.Pool{New: func() any { return new(Request) }}

func getRequest(c *conn, id uint32) *Request {
	r := reqPool.Get().(*Request)
	buf, out := r.buf[:0], r.out[:0]
	*r = Request{c: c, id: id, buf: buf, out: out, Remote: c.remote, Local: c.local, clen: -1}
	return r
}

// maxPooledBuf keeps a rare large POST from pinning 64 KiB in the pool.
const maxPooledBuf = 4 << 10

func putRequest(r *Request) {
	if cap(r.buf) > maxPooledBuf {
		r.buf = nil
	}
	if cap(r.out) > maxPooledBuf {
		r.out = nil
	}
	r.c, r.Query, r.Remote, r.Local = nil, nil, nil, nil
	reqPool.Put(r)
}

// Respond answers the request with status and body (copied: the caller may
// reuse it once Respond returns). A 200 carries
// "cache-control: max-age=maxAge". Call it, or Fail, exactly once; an answer
// for a stream the client reset, or a closed connection, is dropped.
func (r *Request) Respond(status int, body []byte, maxAge uint32) {
	if f := r.Queue(status, body, maxAge); f != nil {
		f.Flush()
	}
}

// Fail answers the request with status and no body.
func (r *Request) Fail(status int) {
	if f := r.Queue(status, nil, 0); f != nil {
		f.Flush()
	}
}

// Queue is Respond without the write, for a caller with several answers
// in hand: it returns the connection to Flush once they are all queued,
// or nil when another caller's Flush is due (or the answer was dropped).
// Neither r nor its connection may be used after, but through the Flusher.
func (r *Request) Queue(status int, body []byte, maxAge uint32) Flusher {
	r.out = append(r.out[:0], body...)
	return r.c.respond(r, status, maxAge)
}

// parseGET decodes the query of a GET's path into r.Query: the status to
// answer with when it cannot, 0 when it did.
func (r *Request) parseGET(rawQuery string, maxBody int) int {
	var v string
	found := false
	for rawQuery != "" {
		var kv string
		kv, rawQuery, _ = strings.Cut(rawQuery, "&")
		if k, val, _ := strings.Cut(kv, "="); k == "dns" {
			v, found = val, true
			break
		}
	}
	if !found || v == "" {
		return 400
	}
	if strings.IndexByte(v, '%') >= 0 {
		u, err := url.QueryUnescape(v)
		if err != nil {
			return 400
		}
		v = u
	}
	// RFC 8484 says unpadded base64url; padded is accepted too.
	v = strings.TrimRight(v, "=")
	n := base64.RawURLEncoding.DecodedLen(len(v))
	if n > maxBody {
		return 413
	}
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	n, err := base64.RawURLEncoding.Decode(r.buf[:n], []byte(v))
	if err != nil {
		return 400
	}
	r.Query = r.buf[:n]
	return 0
}

// mediaTypeOK reports whether a content-type header names the DoH media
// type, parameters allowed.
func mediaTypeOK(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), MediaType)
}
