package h2

import (
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// headerBlock collects one request's header block as HPACK decodes it,
// keeping only what DoH needs. The decoder always runs to the end of a
// block (its table must stay in step with the client's) even when the
// block is refused or too large.
type headerBlock struct {
	max       uint32
	id        uint32
	endStream bool
	size      uint32
	regular   bool // a regular field was seen: no more pseudo fields
	invalid   bool // malformed: the stream is reset with PROTOCOL_ERROR
	tooLarge  bool // over MaxHeaderListSize: 431

	method, path, scheme, ctype string
	clen                        int64
}

func (h *headerBlock) start(id uint32, endStream bool) {
	*h = headerBlock{max: h.max, id: id, endStream: endStream, clen: -1}
}

// emit is the HPACK decoder's callback for each field.
func (h *headerBlock) emit(f hpack.HeaderField) {
	if h.invalid || h.tooLarge {
		return
	}
	// RFC 9113 6.5.2: a field's size is its name and value plus 32.
	h.size += uint32(len(f.Name)+len(f.Value)) + 32
	if h.size > h.max {
		h.tooLarge = true
		return
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		h.invalid = true
		return
	}
	if f.IsPseudo() {
		if h.regular {
			h.invalid = true
			return
		}
		var p *string
		switch f.Name {
		case ":method":
			p = &h.method
		case ":path":
			p = &h.path
		case ":scheme":
			p = &h.scheme
		case ":authority":
			return
		default:
			h.invalid = true
			return
		}
		if *p != "" || f.Value == "" {
			h.invalid = true // repeated or empty
			return
		}
		*p = f.Value
		return
	}
	h.regular = true
	if !validFieldName(f.Name) {
		h.invalid = true
		return
	}
	switch f.Name {
	case "content-type":
		h.ctype = f.Value
	case "content-length":
		n, err := strconv.ParseInt(f.Value, 10, 64)
		if err != nil || n < 0 || (h.clen >= 0 && h.clen != n) {
			h.invalid = true
			return
		}
		h.clen = n
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		// Connection-specific fields are malformed in HTTP/2 (RFC 9113 8.2.2).
		h.invalid = true
	case "te":
		if f.Value != "trailers" {
			h.invalid = true
		}
	}
}

// validFieldName is a token in lower case, as HTTP/2 requires.
func validFieldName(n string) bool {
	if !httpguts.ValidHeaderFieldName(n) {
		return false
	}
	for i := 0; i < len(n); i++ {
		if 'A' <= n[i] && n[i] <= 'Z' {
			return false
		}
	}
	return true
}

// complete reports whether a request has the pseudo fields HTTP/2 requires.
func (h *headerBlock) complete() bool {
	return h.method != "" && h.path != "" && h.scheme != "" && !h.invalid
}

// splitPath cuts the path at its query.
func splitPath(p string) (path, query string) {
	path, query, _ = strings.Cut(p, "?")
	return path, query
}
