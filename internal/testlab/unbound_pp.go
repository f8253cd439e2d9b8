package testlab

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Options that show what a resolver saw of its clients: PROXY protocol,
// the query log, and EDNS Client Subnet passed on to an authoritative
// server.

// SubnetStub is a zone a lab resolver resolves from an authoritative server
// (usually a test's own, on loopback) with EDNS Client Subnet: the resolver
// passes on the client subnet it got in a query (or derives one from the
// client's address) and caches answers by the scope the server returns.
type SubnetStub struct {
	// Zone is the zone's name, fully qualified ("ecs.test.").
	Zone string
	// Addr is the authoritative server, on 127.0.0.1.
	Addr netip.AddrPort
}

// optionLines are the server: lines for the PROXY, query log and ECS
// options.
func (c unboundConf) optionLines() []string {
	var l []string
	for _, a := range c.acl {
		l = append(l, "access-control: "+a)
	}
	if c.pp {
		l = append(l, fmt.Sprintf("proxy-protocol-port: %d", c.port))
	}
	if c.logQueries {
		l = append(l, "log-queries: yes")
	}
	if s := c.stub; s != nil {
		l = append(l,
			// The zone is looked up, not answered from the static root.
			fmt.Sprintf("local-zone: %q transparent", s.Zone),
			fmt.Sprintf("send-client-subnet: %s", s.Addr.Addr()),
			// The authoritative server is on loopback, which unbound
			// skips by default.
			"do-not-query-localhost: no",
			// One query per name reaches the server, not one per label.
			"qname-minimisation: no",
			"max-client-subnet-ipv4: 32",
			"max-client-subnet-ipv6: 128",
		)
	}
	return l
}

// stubClause is the stub-zone clause for SubnetStub, after server:.
func (c unboundConf) stubClause() []string {
	s := c.stub
	if s == nil {
		return nil
	}
	return []string{
		"stub-zone:",
		fmt.Sprintf("    name: %q", s.Zone),
		fmt.Sprintf("    stub-addr: %s@%d", s.Addr.Addr(), s.Addr.Port()),
	}
}

// ppLocalHeader is a PROXY protocol v2 header with the LOCAL command: the
// sender speaks for itself, as a health check does.
var ppLocalHeader = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

// probeProxied sends q over UDP behind a LOCAL PROXY header, which a
// resolver with ProxyProtocol needs, and returns the answer.
func probeProxied(q *dns.Msg, addr netip.AddrPort, ns *Netns) (*dns.Msg, error) {
	wire, err := q.Pack()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	var conn net.Conn
	if ns == nil {
		var d net.Dialer
		conn, err = d.DialContext(ctx, "udp", addr.String())
	} else {
		conn, err = ns.DialContext(ctx, "udp", addr.String())
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(probeTimeout))
	if _, err := conn.Write(append(append([]byte(nil), ppLocalHeader...), wire...)); err != nil {
		return nil, err
	}
	buf := make([]byte, dns.MaxMsgSize)
	n, err := conn.Read(buf)
	if err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		return nil, err
	}
	if r.Id != q.Id {
		return nil, fmt.Errorf("answer has ID %d, want %d", r.Id, q.Id)
	}
	return r, nil
}

// ProxyHeader returns a PROXY protocol v2 header for a TCP connection (or a
// UDP datagram when udp is set) from src to dst, for tests that talk to a
// resolver with ProxyProtocol themselves.
func ProxyHeader(src, dst netip.AddrPort, udp bool) []byte {
	b := []byte("\r\n\r\n\x00\r\nQUIT\n\x21")
	proto := byte(0x01)
	if udp {
		proto = 0x02
	}
	if src.Addr().Is4() {
		b = append(b, 0x10|proto, 0, 12)
		s, d := src.Addr().As4(), dst.Addr().Unmap().As4()
		b = append(append(b, s[:]...), d[:]...)
	} else {
		b = append(b, 0x20|proto, 0, 36)
		s, d := src.Addr().As16(), dst.Addr().As16()
		b = append(append(b, s[:]...), d[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, src.Port())
	return binary.BigEndian.AppendUint16(b, dst.Port())
}

// QueriesFor returns the client addresses the resolver logged queries for
// name from (LogQueries), in log order: with ProxyProtocol, the addresses
// the headers named. name is fully qualified; case is ignored.
func (u *Unbound) QueriesFor(name string) ([]netip.Addr, error) {
	f, err := os.Open(u.logPath)
	if err != nil {
		return nil, fmt.Errorf("unbound log: %w", err)
	}
	defer f.Close()
	var got []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "[time] unbound[pid:thread] info: 192.0.2.1 name. A IN"
		_, rest, ok := strings.Cut(sc.Text(), " info: ")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) < 4 || !strings.EqualFold(fields[1], name) {
			continue
		}
		if a, err := netip.ParseAddr(fields[0]); err == nil {
			got = append(got, a)
		}
	}
	return got, sc.Err()
}
