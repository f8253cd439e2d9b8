package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/stream"
)

// The stream front ends (TCP, DoT, DoH, DoQ) live in proxy/stream; this file
// is the core's side of them: building one per listen address, the Handler
// they hand queries to, and their counters.

// streamAnswers is the core's side of the stream seam: the front ends hand
// it each query they read, whole, and send what it returns.
type streamAnswers struct{ p *Proxy }

// Answer validates and answers one query from a stream client.
func (a streamAnswers) Answer(msg []byte, client, local netip.AddrPort, tr dnswire.Transport) []byte {
	return a.p.answerTCPFrom(msg, client, local, tr)
}

// AnswerAsync validates and answers one query from a stream front end
// that does not block on it (async.go).
func (a streamAnswers) AnswerAsync(msg []byte, client, local netip.AddrPort, tr dnswire.Transport, w stream.Waiter) {
	a.p.answerAsync(msg, client, local, tr, w)
}

func (p *Proxy) streamDeps() stream.Deps {
	return stream.Deps{Handler: streamAnswers{p}, Log: p.log,
		Queries: &p.stats.TCPQueries, ConnsRefused: &p.stats.TCPConnsRefused, Short: &p.stats.MalformedShort,
		SlowReaders: &p.stats.TCPSlowReaders}
}

// transportSource is one front end's counters under its protocol's name.
type transportSource struct {
	proto string
	c     *stream.Counters
}

// TransportCounts are one protocol's transport counters, summed over its
// listeners.
type TransportCounts = stream.Counts

// TransportStats returns the DoT, DoH, DoQ and PROXY protocol counters by
// protocol ("do53" for TCP listeners with PROXY protocol). It is valid once
// Run has opened the listeners.
func (p *Proxy) TransportStats() map[string]TransportCounts {
	out := map[string]TransportCounts{}
	run := p.started.Load()
	if run == nil {
		return out
	}
	for _, t := range run.transports {
		c := out[t.proto]
		c.Add(t.c)
		out[t.proto] = c
	}
	return out
}

// proxyFrom is whom l reads PROXY headers from: nobody without
// proxy_protocol.
func proxyFrom(l config.Listen) []netip.Prefix {
	if !l.ProxyProtocol {
		return nil
	}
	return l.ProxyProtocolFrom
}

// tcpFront makes the TCP front end of a do53 listener on ln.
func (p *Proxy) tcpFront(cfg *config.Config, l config.Listen, ln net.Listener) {
	f := stream.NewTCP(ln, stream.TCPConfig{Limits: cfg.Proxy.TCP, Conns: p.conns, ProxyFrom: proxyFrom(l)}, p.streamDeps())
	p.fronts = append(p.fronts, f)
	if l.ProxyProtocol {
		p.transports = append(p.transports, transportSource{"do53", f.Counters()})
	}
}

// listenTransport opens the socket of one dot, doh or doq address and
// makes its front end.
func (p *Proxy) listenTransport(cfg *config.Config, l config.Listen) error {
	if l.TLS == nil {
		return fmt.Errorf("listen %s %s: no tls", l.Protocol, l.Address)
	}
	certs, err := stream.LoadCerts(l.TLS, p.log)
	if err != nil {
		return fmt.Errorf("listen %s %s: %w", l.Protocol, l.Address, err)
	}
	lim := cfg.Proxy.TCP
	var f stream.Front
	if l.Protocol == "doq" {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(l.Address))
		if err != nil {
			return fmt.Errorf("listen doq %s: %w", l.Address, err)
		}
		if f, err = stream.NewDoQ(udp, stream.DoQConfig{Limits: lim, Certs: certs}, p.streamDeps()); err != nil {
			return fmt.Errorf("listen doq %s: %w", l.Address, err)
		}
	} else {
		ln, err := net.Listen("tcp", l.Address.String())
		if err != nil {
			return fmt.Errorf("listen %s %s: %w", l.Protocol, l.Address, err)
		}
		if l.Protocol == "doh" {
			f = stream.NewDoH(ln, stream.DoHConfig{Limits: lim, Conns: p.conns, Certs: certs, Path: l.Path,
				AnswerTime: cfg.Proxy.Deadline + time.Second, ProxyFrom: proxyFrom(l)}, p.streamDeps())
		} else {
			f = stream.NewTCP(ln, stream.TCPConfig{Limits: lim, Conns: p.conns, Certs: certs, ProxyFrom: proxyFrom(l)}, p.streamDeps())
		}
	}
	certs.CountInto(f.Counters())
	p.fronts = append(p.fronts, f)
	p.transports = append(p.transports, transportSource{l.Protocol, f.Counters()})
	return nil
}

// streamInflight is the number of queries the stream front ends have read
// and not yet answered.
func (p *Proxy) streamInflight() int64 {
	var n int64
	for _, f := range p.fronts {
		n += f.Inflight()
	}
	return n
}
