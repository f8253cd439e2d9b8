package ebpf

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	cebpf "github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
)

// responder is a tiny DNS server on the lab's VIPs in the server
// namespace: it answers every query with an A record and counts what it
// received per source, which shows what XDP let through.
type responder struct {
	mu   sync.Mutex
	seen map[netip.Addr]int
}

func startResponder(t *testing.T, lab *testlab.XDPLab) *responder {
	t.Helper()
	r := &responder{seen: map[netip.Addr]int{}}
	var conns []*net.UDPConn
	err := lab.Do(lab.Server, func() error {
		for _, vip := range []netip.Addr{lab.VIP4, lab.VIP6} {
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(vip, 53)))
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("responder: %v", err)
	}
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.serve(c)
		}()
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
	return r
}

func (r *responder) serve(c *net.UDPConn) {
	buf := make([]byte, 4096)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return // closed
		}
		r.mu.Lock()
		r.seen[from.Addr().Unmap()]++
		r.mu.Unlock()
		var q dns.Msg
		if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
			continue
		}
		a := new(dns.Msg).SetReply(&q)
		a.Answer = append(a.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   net.IPv4(192, 0, 2, 80),
		})
		if b, err := a.Pack(); err == nil {
			c.WriteToUDPAddrPort(b, from)
		}
	}
}

// received returns how many datagrams the responder got from src.
func (r *responder) received(src netip.Addr) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[src]
}

// labClient is a UDP socket in the client namespace bound to one address.
type labClient struct {
	conn *net.UDPConn
	id   uint16
}

func newLabClient(t *testing.T, lab *testlab.XDPLab, addr netip.Addr) *labClient {
	t.Helper()
	var c *net.UDPConn
	err := lab.Do(lab.Client, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("client %v: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &labClient{conn: c}
}

// send sends one query (or, with response set, a response) to vip.
func (c *labClient) send(t *testing.T, vip netip.Addr, response bool) {
	t.Helper()
	c.id++
	m := new(dns.Msg).SetQuestion("example.com.", dns.TypeA)
	m.Id = c.id
	m.Response = response
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(vip, 53)); err != nil {
		t.Fatal(err)
	}
}

// collect reads answers until nothing has come for quiet, and returns the
// counts of full answers and of TC=1 answers.
func (c *labClient) collect(t *testing.T, quiet time.Duration) (full, tc int) {
	t.Helper()
	buf := make([]byte, 4096)
	for {
		c.conn.SetReadDeadline(time.Now().Add(quiet))
		n, err := c.conn.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return full, tc
		}
		if err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		switch {
		case m.Unpack(buf[:n]) != nil || !m.Response:
			t.Errorf("client got something that is not an answer: %x", buf[:n])
		case m.Truncated && len(m.Answer) == 0:
			tc++
		default:
			full++
		}
	}
}

// ask sends n queries one after the other, each waiting up to wait for its
// answer, and returns how many were answered.
func (c *labClient) ask(t *testing.T, vip netip.Addr, n int, wait time.Duration) int {
	t.Helper()
	got := 0
	buf := make([]byte, 4096)
	for range n {
		c.send(t, vip, false)
		c.conn.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := c.conn.Read(buf)
			if err != nil {
				break // timed out: unanswered
			}
			var m dns.Msg
			if m.Unpack(buf[:n]) == nil && m.Id == c.id && m.Response && !m.Truncated {
				got++
				break
			}
		}
	}
	return got
}

// attachPass attaches an XDP_PASS program in native mode to the client's
// end of the veth: native XDP_TX on a veth reaches the peer only when the
// peer runs XDP too.
func attachPass(t *testing.T, lab *testlab.XDPLab) {
	t.Helper()
	prog, err := cebpf.NewProgram(&cebpf.ProgramSpec{
		Type: cebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	var l link.Link
	err = lab.Do(lab.Client, func() error {
		ifi, err := net.InterfaceByName(lab.ClientIf)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		prog.Close()
		t.Fatalf("attach XDP_PASS to the client: %v", err)
	}
	t.Cleanup(func() {
		l.Close()
		prog.Close()
	})
}

// xdpState returns how an XDP program is attached to the server's
// interface, from the first line of `ip -d link`: "xdp" (native),
// "xdpgeneric", or "" when none is.
func xdpState(t *testing.T, lab *testlab.XDPLab) string {
	t.Helper()
	first, _, _ := strings.Cut(lab.LinkDetails(t, lab.Server, lab.ServerIf), "\n")
	for _, f := range strings.Fields(first) {
		switch f {
		case "xdp", "xdpdrv":
			return "xdp"
		case "xdpgeneric", "xdpoffload":
			return f
		}
	}
	return ""
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
