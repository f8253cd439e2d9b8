package main

// The cache-hit cases: the sender is inside `acl:` and asks one name over
// and over; the proxy answers it from its packet cache, or, with
// cache.xdp_entries, the XDP program answers it from the answer cache the
// proxy published to it.

import (
	"fmt"
	"net"
	"strings"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/miekg/dns"
)

// backendAddr is where the hit cases' backend listens, inside the
// server's namespace: one answer fills the cache, the rest are hits.
const backendAddr = "127.0.0.1:5301"

// hitConfig is anyfront's config for a cache-hit case: the sender's
// network in the acl, a cache, and for XDP the answer cache on.
func (l *lab) hitConfig(c benchCase) string {
	xdpEntries := 0
	if c.xdp != "" {
		xdpEntries = 16
	}
	cfg := fmt.Sprintf(`listen: [{address: "%s:53"}]
acl: ["127.0.0.0/8", "%s/24"]
admin: {listen: "127.0.0.1:%d"}
pools:
  default:
    backends: [{name: r1, address: "%s"}]
    cache: {size: 1000, xdp_entries: %d}
`, vip, senderAddr, adminPort, backendAddr, xdpEntries)
	if c.xdp != "" {
		cfg += fmt.Sprintf("xdp:\n  interface: %s\n  mode: %s\n  vips: [\"%s:53\"]\n", l.serverIf, c.xdp, vip)
	}
	return cfg
}

// hitMetric is the counter of answers a hit case makes.
func hitMetric(c benchCase) string {
	if c.xdp != "" {
		return `anyfront_xdp_packets_total{verdict="answered"}`
	}
	return `anyfront_proxy_cache_events_total{event="hit",pool="default"}`
}

// startBackend answers every query in the server's namespace with one A
// record of a long TTL: the proxy caches it once.
func (l *lab) startBackend() (stop func(), err error) {
	var conn *net.UDPConn
	err = inNS(l.server, func() error {
		a, err := net.ResolveUDPAddr("udp", backendAddr)
		if err != nil {
			return err
		}
		conn, err = net.ListenUDP("udp", a)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			var q dns.Msg
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			m := new(dns.Msg).SetReply(&q)
			m.RecursionAvailable = true
			m.Answer = []dns.RR{&dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 3600},
				A:   net.IPv4(192, 0, 2, 80),
			}}
			if opt := q.IsEdns0(); opt != nil {
				m.SetEdns0(1232, opt.Do())
			}
			if b, err := m.Pack(); err == nil {
				_, _ = conn.WriteToUDPAddrPort(b, from)
			}
		}
	}()
	return func() { conn.Close(); <-done }, nil
}

// attachClientPass attaches an XDP_PASS program in native mode to the
// sender's end of the veth: without one, frames the server's native XDP
// sends back with XDP_TX never reach the sender's side of the veth.
func (l *lab) attachClientPass() (detach func(), err error) {
	prog, err := cebpf.NewProgram(&cebpf.ProgramSpec{
		Type: cebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()},
	})
	if err != nil {
		return nil, err
	}
	var lnk link.Link
	err = inNS(l.client, func() error {
		ifi, err := net.InterfaceByName(l.clientIf)
		if err != nil {
			return err
		}
		lnk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		prog.Close()
		return nil, fmt.Errorf("XDP_PASS on the sender's veth: %w", err)
	}
	return func() { lnk.Close(); prog.Close() }, nil
}

// waitHits waits until the hit counter moves: the proxy has cached the
// answer and, with XDP, published it and XDP answers.
func waitHits(get func() (string, error), metric string, within time.Duration) error {
	deadline := time.Now().Add(within)
	first := -1.0
	for time.Now().Before(deadline) {
		body, err := get()
		if err == nil && strings.Contains(body, metric) {
			v := metricValue(body, metric)
			if first < 0 {
				first = v
			} else if v > first {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not move within %v", metric, within)
}
