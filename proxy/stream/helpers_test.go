package stream

import (
	"net/netip"
	"sync/atomic"

	"github.com/anyfront/anyfront/proxy/dnswire"
)

// echo stands in for the core in unit tests: it answers every message of
// at least a header with that header, QR set, and drops shorter ones (the
// core's judgement of a query is not what these tests are about). It
// records the transport and addresses of the last query.
type echo struct {
	calls atomic.Int64
	last  atomic.Pointer[echoCall]
	// block, when set, holds every answer until it is closed.
	block chan struct{}
	// drop answers nothing, as for a query a rule drops.
	drop atomic.Bool
}

type echoCall struct {
	client, local netip.AddrPort
	tr            dnswire.Transport
}

func (e *echo) Answer(msg []byte, client, local netip.AddrPort, tr dnswire.Transport) []byte {
	e.calls.Add(1)
	e.last.Store(&echoCall{client, local, tr})
	if e.block != nil {
		<-e.block
	}
	if len(msg) < dnswire.HeaderLen || e.drop.Load() {
		return nil
	}
	resp := append([]byte(nil), msg[:dnswire.HeaderLen]...)
	resp[2] |= 0x80
	resp[4], resp[5] = 0, 0 // no question: a bare header
	return resp
}

// AnswerAsync answers as Answer does: at once, or once block is closed, on
// a goroutine of its own (only tests block).
func (e *echo) AnswerAsync(msg []byte, client, local netip.AddrPort, tr dnswire.Transport, w Waiter) {
	if e.block == nil {
		w.Answered(e.Answer(msg, client, local, tr))
		return
	}
	q := append([]byte(nil), msg...)
	go func() { w.Answered(e.Answer(q, client, local, tr)) }()
}
