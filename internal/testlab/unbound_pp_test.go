package testlab

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestUnboundProxyProtocolLogsTheNamedClient(t *testing.T) {
	t.Parallel()
	u := StartUnbound(t, UnboundOptions{ProxyProtocol: true, LogQueries: true, AccessControl: []string{"127.0.0.3/32 refuse"}})

	t.Run("a query without a header is dropped", func(t *testing.T) {
		if r, err := exchange(u, "udp", "plain.demo.test.", dns.TypeA, 0, 300*time.Millisecond); err == nil {
			t.Fatalf("got an answer without a PROXY header: %v", r)
		}
	})
	t.Run("udp: one header per datagram", func(t *testing.T) {
		src := netip.MustParseAddrPort("127.0.0.7:4242")
		r := askBehind(t, u, "udp", ProxyHeader(src, u.Addr, true), "pp-udp.demo.test.")
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
		wantLogged(t, u, "pp-udp.demo.test.", src.Addr())
	})
	t.Run("tcp: one header per connection", func(t *testing.T) {
		src := netip.MustParseAddrPort("127.0.0.9:5353")
		r := askBehind(t, u, "tcp", ProxyHeader(src, u.Addr, false), "pp-tcp.demo.test.")
		if r.Rcode != dns.RcodeNameError {
			t.Fatalf("rcode %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
		}
		wantLogged(t, u, "pp-tcp.demo.test.", src.Addr())
	})
	t.Run("access-control applies to the named client", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			src := netip.MustParseAddrPort("127.0.0.3:4242")
			r := askBehind(t, u, network, ProxyHeader(src, u.Addr, network == "udp"), "pp-refused.demo.test.")
			if r.Rcode != dns.RcodeRefused {
				t.Fatalf("%s: rcode %s, want REFUSED", network, dns.RcodeToString[r.Rcode])
			}
		}
	})
}

// askBehind sends one query for name to u over network, behind hdr.
func askBehind(t *testing.T, u *Unbound, network string, hdr []byte, name string) *dns.Msg {
	t.Helper()
	c, err := net.Dial(network, u.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	q, err := new(dns.Msg).SetQuestion(name, dns.TypeA).Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), hdr...)
	if network == "tcp" {
		out = binary.BigEndian.AppendUint16(out, uint16(len(q)))
	}
	if _, err := c.Write(append(out, q...)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	var n int
	if network == "tcp" {
		if _, err = io.ReadFull(c, buf[:2]); err == nil {
			n = int(binary.BigEndian.Uint16(buf))
			_, err = io.ReadFull(c, buf[:n])
		}
	} else {
		n, err = c.Read(buf)
	}
	if err != nil {
		t.Fatalf("%s query for %s behind a PROXY header: %v", network, name, err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		t.Fatal(err)
	}
	return r
}

// wantLogged fails unless u's query log names exactly want as the client
// of name. Unbound logs a query before answering it, so once the answer is
// in, the line is written.
func wantLogged(t *testing.T, u *Unbound, name string, want ...netip.Addr) {
	t.Helper()
	got, err := u.QueriesFor(name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("unbound logged %s from %v, want %v", name, got, want)
	}
}
