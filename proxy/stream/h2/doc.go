// Package h2 is a small HTTP/2 server for DNS over HTTPS (RFC 8484). It owns
// HTTP/2 framing for DoH and nothing else: it knows no DNS beyond the media
// type application/dns-message, and never imports proxy.
//
// Why not net/http: its HTTP/2 server runs a goroutine per stream, a
// ResponseWriter and header maps per request, and most of DoH's CPU per query
// went there. Here each connection has exactly one reading goroutine (the
// caller of ServeConn) and one writing goroutine; a request is handed to a
// non-blocking Handler on the reading goroutine and answered later, from any
// goroutine, with Request.Respond. Responses ready together leave in one
// buffered write. Framing and HPACK come from golang.org/x/net/http2 (its
// Framer and hpack packages), well kept and fuzzed upstream.
//
// HTTP/1.1 is not served here; a caller keeps net/http for it and hands
// connections that negotiated ALPN "h2" to ServeConn.
package h2
