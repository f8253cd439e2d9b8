package healthcheck

// ppLocal is a PROXY protocol v2 header with the LOCAL command (haproxy's
// proxy-protocol.txt, section 2.2). A backend with proxy_protocol drops
// anything that does not start with a header, probes included; LOCAL is
// the command meant for a proxy's own health checks, and tells the backend
// to take the connection's real endpoints, anyfront's address, as the
// source.
var ppLocal = [16]byte{'\r', '\n', '\r', '\n', 0, '\r', '\n', 'Q', 'U', 'I', 'T', '\n', 0x20, 0, 0, 0}
