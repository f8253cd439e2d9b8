package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

// ecsServer is an authoritative test server for ecs.test. that records the
// client subnet of every query and answers with a scope the name asks for:
// "s24.ecs.test." answers with SCOPE 24, "s0..." with 0; "noecs..." echoes
// no ECS at all; "big..." answers with more than 512 bytes of records. The
// A record carries the subnet's third octet, so a test can tell whose
// answer a client got.
type ecsServer struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen map[string][]string // name -> subnets received ("" without ECS)
}

func startECSServer(t *testing.T) *ecsServer {
	t.Helper()
	s := &ecsServer{seen: map[string][]string{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	s.addr = netip.MustParseAddrPort(pc.LocalAddr().String())
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: ln, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

func (s *ecsServer) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	name := strings.ToLower(q.Question[0].Name)
	var ecs *dns.EDNS0_SUBNET
	if o := q.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_SUBNET); ok {
				ecs = e
			}
		}
	}
	subnet, octet := "", byte(0)
	if ecs != nil {
		subnet = fmt.Sprintf("%s/%d", ecs.Address, ecs.SourceNetmask)
		if a := ecs.Address.To4(); a != nil {
			octet = a[2]
		}
	}
	s.mu.Lock()
	s.seen[name] = append(s.seen[name], subnet)
	s.mu.Unlock()

	r := new(dns.Msg).SetReply(q)
	r.Authoritative = true
	n := 1
	if strings.HasPrefix(name, "big.") {
		n = 40
	}
	for i := 0; i < n; i++ {
		r.Answer = append(r.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A: net.IPv4(192, 0, octet, byte(10+i))})
	}
	if o := q.IsEdns0(); o != nil {
		r.SetEdns0(o.UDPSize(), o.Do())
		if ecs != nil && !strings.HasPrefix(name, "noecs.") {
			echo := *ecs
			if strings.HasPrefix(name, "s24.") {
				echo.SourceScope = 24
			}
			r.IsEdns0().Option = append(r.IsEdns0().Option, &echo)
		}
	}
	_ = w.WriteMsg(r)
}

// subnets returns what the server received for name.
func (s *ecsServer) subnets(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen[name]...)
}

// ask sends q to the proxy from src over network.
func (l *lab) ask(t *testing.T, network, src string, q *dns.Msg) *dns.Msg {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}
	if network == "tcp" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &dns.Client{Net: network, Timeout: 5 * time.Second, Dialer: d, UDPSize: 65535}
	q.Id = dns.Id()
	r, _, err := c.Exchange(q, l.addr)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", network, q.Question[0].Name, src, err)
	}
	return r
}

func withSubnet(m *dns.Msg, subnet string) *dns.Msg {
	p := netip.MustParsePrefix(subnet)
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1,
		SourceNetmask: uint8(p.Bits()), Address: net.IP(p.Addr().AsSlice())})
	return m
}

func ecsLab(t *testing.T, ecs, cache string) (*lab, *ecsServer) {
	t.Helper()
	s := startECSServer(t)
	return runProxy(t, fmt.Sprintf("pools:\n  default:\n    backends: [{name: auth, address: %q}]\n    ecs: %s\n    cache: %s\n",
		s.addr.String(), ecs, cache)), s
}

func TestLabECS(t *testing.T) {
	l, s := ecsLab(t, "{add: true, v4_prefix: 24}", "{size: 1000}")
	want := func(t *testing.T, name string, subnets ...string) {
		t.Helper()
		if got := s.subnets(name); strings.Join(got, " ") != strings.Join(subnets, " ") {
			t.Fatalf("backend got %s with ECS %q, want %q", name, got, subnets)
		}
	}
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network+": a client without EDNS gets no OPT back", func(t *testing.T) {
			name := network + "-plain.ecs.test."
			r := l.ask(t, network, "127.0.0.2", dnstest.Query(name, dns.TypeA))
			if r.IsEdns0() != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("answer %v: want one A record and no OPT", r)
			}
			want(t, name, "127.0.0.0/24")
		})
		t.Run(network+": a client with EDNS keeps its OPT, without the ECS it never sent", func(t *testing.T) {
			name := network + "-edns.ecs.test."
			q := dnstest.Query(name, dns.TypeA)
			q.SetEdns0(1232, true)
			r := l.ask(t, network, "127.0.0.2", q)
			if o := r.IsEdns0(); o == nil || !o.Do() || len(o.Option) != 0 {
				t.Fatalf("answer's OPT %v: want DO echoed and no options", o)
			}
			want(t, name, "127.0.0.0/24")
		})
		t.Run(network+": a client's own ECS passes through both ways", func(t *testing.T) {
			name := network + "-own.ecs.test."
			r := l.ask(t, network, "127.0.0.2", withSubnet(dnstest.Query(name, dns.TypeA), "203.0.113.0/24"))
			if got := dnstest.SubnetOf(t, r); len(got) != 1 || got[0].Address.String() != "203.0.113.0" {
				t.Fatalf("answer's ECS %v: want the client's own echoed", got)
			}
			want(t, name, "203.0.113.0/24")
		})
	}
	t.Run("scope 24: shared within the /24, not beyond", func(t *testing.T) {
		name := "s24.ecs.test."
		l.ask(t, "udp", "127.0.0.2", dnstest.Query(name, dns.TypeA))
		r := l.ask(t, "udp", "127.0.0.3", dnstest.Query(name, dns.TypeA)) // same /24: from the cache
		wantA(t, r, "192.0.0.10")
		r = l.ask(t, "udp", "127.0.1.2", dnstest.Query(name, dns.TypeA)) // another /24: asks the backend
		wantA(t, r, "192.0.1.10")
		want(t, name, "127.0.0.0/24", "127.0.1.0/24")
	})
	t.Run("scope 0: shared by every subnet", func(t *testing.T) {
		name := "s0.ecs.test."
		l.ask(t, "udp", "127.0.0.2", dnstest.Query(name, dns.TypeA))
		wantA(t, l.ask(t, "udp", "127.0.1.2", dnstest.Query(name, dns.TypeA)), "192.0.0.10")
		wantA(t, l.ask(t, "tcp", "127.0.2.2", dnstest.Query(name, dns.TypeA)), "192.0.0.10")
		want(t, name, "127.0.0.0/24")
	})
	t.Run("no ECS in the answer: shared by every subnet", func(t *testing.T) {
		name := "noecs.ecs.test."
		l.ask(t, "udp", "127.0.0.2", dnstest.Query(name, dns.TypeA))
		l.ask(t, "udp", "127.0.1.2", dnstest.Query(name, dns.TypeA))
		want(t, name, "127.0.0.0/24")
	})
	t.Run("an answer too big for a client without EDNS is truncated after the OPT goes", func(t *testing.T) {
		r := l.ask(t, "udp", "127.0.0.2", dnstest.Query("big.ecs.test.", dns.TypeA))
		if !r.Truncated || r.IsEdns0() != nil || len(r.Answer) != 0 {
			t.Fatalf("answer %v: want TC=1, no OPT, no records", r)
		}
		r = l.ask(t, "tcp", "127.0.0.2", dnstest.Query("big.ecs.test.", dns.TypeA))
		if r.Truncated || len(r.Answer) != 40 || r.IsEdns0() != nil {
			t.Fatalf("tcp answer: TC=%v, %d records, OPT %v; want all 40 and no OPT", r.Truncated, len(r.Answer), r.IsEdns0())
		}
	})
}

func TestLabECSOverride(t *testing.T) {
	l, s := ecsLab(t, "{add: true, override: true, v4_prefix: 16}", "{size: 0}")
	name := "s24.ecs.test."
	r := l.ask(t, "udp", "127.0.0.2", withSubnet(dnstest.Query(name, dns.TypeA), "203.0.113.0/24"))
	if got := s.subnets(name); len(got) != 1 || got[0] != "127.0.0.0/16" {
		t.Fatalf("backend got ECS %v, want the client's own address cut to /16", got)
	}
	if o := r.IsEdns0(); o == nil || len(dnstest.SubnetOf(t, r)) != 0 {
		t.Fatalf("answer's OPT %v: want it kept, without the ECS anyfront put in", o)
	}
}

// The backends are unbound processes: a test server in this process would
// count its own allocations. unbound answers from local data without ECS,
// so the answer path still removes the OPT record anyfront added.
func TestLabECSAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	t.Run("forwarded with an OPT added and removed", func(t *testing.T) {
		l := startLab(t, 1, "", "    ecs: {add: true}")
		if r := l.ask(t, "udp", "127.0.0.2", dnstest.Query("www.demo.test.", dns.TypeA)); r.IsEdns0() != nil {
			t.Fatalf("answer kept the OPT anyfront added: %v", r)
		}
		if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
			t.Errorf("%.2f allocations per forwarded ECS query, want 0", avg)
		}
	})
	t.Run("cache hits through the shared key", func(t *testing.T) {
		l := startLab(t, 1, "", "    ecs: {add: true}\n    cache: {size: 1000}")
		if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
			t.Errorf("%.2f allocations per ECS cache hit, want 0", avg)
		}
	})
}

// ECS reaches a real resolver: unbound, with its subnetcache module, takes
// the subnet anyfront adds and passes it on to the authoritative server it
// resolves ecs.test. from, and answers with the scope that server gave.
func TestLabECSThroughUnbound(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	auth := startECSServer(t)
	u := testlab.StartUnbound(t, testlab.UnboundOptions{SubnetStub: &testlab.SubnetStub{Zone: "ecs.test.", Addr: auth.addr}})
	l := runProxy(t, fmt.Sprintf("pools:\n  default:\n    backends: [{name: u1, address: %q}]\n    ecs: {add: true, v4_prefix: 24}\n    cache: {size: 1000}\n",
		u.Addr.String()))
	name := "s24.ecs.test."
	wantA(t, l.ask(t, "udp", "127.0.0.2", dnstest.Query(name, dns.TypeA)), "192.0.0.10")
	wantA(t, l.ask(t, "udp", "127.0.1.2", dnstest.Query(name, dns.TypeA)), "192.0.1.10")
	// The third query comes from anyfront's cache: unbound's scope-24
	// answer for 127.0.0.0/24 serves it.
	wantA(t, l.ask(t, "udp", "127.0.0.3", dnstest.Query(name, dns.TypeA)), "192.0.0.10")
	got := auth.subnets(name)
	if strings.Join(got, " ") != "127.0.0.0/24 127.0.1.0/24" {
		t.Fatalf("the authoritative server got ECS %q through unbound, want the two clients' /24s", got)
	}
}
