package testlab

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
)

// freePortAttempts bounds FreePort's search: a port the kernel hands out for
// TCP is almost always free for UDP too, so a few tries are plenty.
const freePortAttempts = 50

// FreePort returns a port on 127.0.0.1 that is free for both UDP and TCP at
// the time of the call. Another process may take it before the caller binds
// it; NewUnbound retries with a new port when that happens. The port comes
// from below the kernel's ephemeral range (32768-60999 by default), so the
// source ports of the many connections and queries tests make (dnsperf,
// unbound's, health checks) cannot take it between the check and the bind:
// a CI run once failed on exactly that. Parallel test processes start at
// random places in the range and then walk it, so they rarely meet.
func FreePort() (int, error) {
	var lastErr error
	for range freePortAttempts {
		port := lowPortBase + int(nextLowPort.Add(1)%lowPortSpan)
		if ok, err := freeBoth(port); ok {
			return port, nil
		} else if err != nil {
			lastErr = err
		}
	}
	// The low range is crowded: let the kernel pick, as before.
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
		2*freePortAttempts, lastErr)
}

const (
	lowPortBase = 20000
	lowPortSpan = 32768 - lowPortBase
)

// nextLowPort walks the low range from a random place per process.
var nextLowPort = func() *atomic.Uint64 {
	var n atomic.Uint64
	n.Store(rand.Uint64N(lowPortSpan))
	return &n
}()

// freeBoth reports whether port binds on 127.0.0.1 for TCP and for UDP.
func freeBoth(port int) (bool, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false, err
	}
	defer l.Close()
	u, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false, err
	}
	u.Close()
	return true, nil
}
