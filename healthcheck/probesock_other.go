//go:build !linux

package healthcheck

import (
	"errors"
	"net/netip"
	"time"
)

// probeSocket needs sendmmsg and recvmmsg (probesock_linux.go); anyfront
// runs on Linux only, and this stub keeps the package building elsewhere.
type probeSocket struct{}

func openProbeSocket(bool, int) (*probeSocket, error) {
	return nil, errors.New("UDP health probes need Linux")
}

func (*probeSocket) close()                                           {}
func (*probeSocket) full() bool                                       { return true }
func (*probeSocket) add([]byte, uint16, netip.AddrPort, uint32, bool) {}
func (*probeSocket) flush(func(int, error))                           {}
func (*probeSocket) recv() int                                        { return 0 }
func (*probeSocket) received(int) ([]byte, netip.AddrPort, time.Time) {
	return nil, netip.AddrPort{}, time.Time{}
}
