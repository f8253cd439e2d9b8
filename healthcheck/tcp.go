package healthcheck

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"time"
)

// probeTCP runs one TCP probe: connect, send, read one answer. TCP needs a
// connection per probe (a kept-open one would not show that the backend
// still accepts connections), so it gets a goroutine for the probe's life;
// at most one per backend, bounded by the timeout.
func (c *Checker) probeTCP(ctx context.Context, b *backend, seq uint64, id uint16, set *settings) {
	defer c.tcpWG.Done()
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(set.timeout))
	defer cancel()
	r, rcode, detail := exchangeTCP(ctx, b.addrText, b.pp, id, set)
	if r == resultTimeout {
		return // the scheduler's deadline ends the probe
	}
	c.ended(b, seq, r, rcode, detail, time.Since(start))
}

// exchangeTCP sends the probe over a new connection (opened with a PROXY
// LOCAL header when pp is set) and judges the answer.
func exchangeTCP(ctx context.Context, addr string, pp bool, id uint16, set *settings) (result, int, string) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return resultTimeout, 0, ""
		}
		return resultError, 0, err.Error()
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	var msg []byte
	if pp {
		msg = append(msg, ppLocal[:]...)
	}
	h := len(msg)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(set.query)))
	msg = append(msg, set.query...)
	putID(msg[h+2:], id)
	if _, err := conn.Write(msg); err != nil {
		return tcpFailure(err)
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return tcpFailure(err)
	}
	ans := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, ans); err != nil {
		return tcpFailure(err)
	}
	if len(ans) < 2 || binary.BigEndian.Uint16(ans) != id {
		// One query on a fresh connection: any other ID is a broken
		// server, not a stray packet.
		return resultBadAnswer, 0, "answer has another ID"
	}
	return judge(ans, set)
}

func tcpFailure(err error) (result, int, string) {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return resultTimeout, 0, ""
	}
	return resultError, 0, err.Error()
}
