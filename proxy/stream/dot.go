package stream

import "crypto/tls"

// DNS over TLS (RFC 7858) is the TCP front end on TLS connections (tcp.go),
// so DoT shares its framing, pipelining, bounds and the one validation path.
// This file holds what TLS adds to a TCP connection: the handshake on its
// first read, and the count of failed ones (certificates, ticket keys and the
// count of handshakes that succeed: tls.go).

// dotConn counts a failed handshake. Reads come from the connection's one
// reader goroutine, and writes only follow a read, so shook needs no lock.
type dotConn struct {
	*tls.Conn
	st    *Counters
	shook bool
}

func (c *dotConn) Read(b []byte) (int, error) {
	if !c.shook {
		c.shook = true
		if err := c.Conn.Handshake(); err != nil {
			c.st.handshakeFail.Add(1)
			return 0, err
		}
	}
	return c.Conn.Read(b)
}
