package testlab

import (
	"fmt"
	"net"
)

// freePortAttempts bounds FreePort's search: a port the kernel hands out for
// TCP is almost always free for UDP too, so a few tries are plenty.
const freePortAttempts = 50

// FreePort returns a port on 127.0.0.1 that is free for both UDP and TCP at
// the time of the call. Another process may take it before the caller binds
// it; NewUnbound retries with a new port when that happens.
func FreePort() (int, error) {
	var lastErr error
	for range freePortAttempts {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			lastErr = err
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, fmt.Errorf("find free port: no port free for both UDP and TCP after %d tries: %w",
		freePortAttempts, lastErr)
}
