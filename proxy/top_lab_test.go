package proxy

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/internal/testlab"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
	"github.com/anyfront/anyfront/proxy/top"
)

// TestLabTopClientsAndNames sends queries from three loopback addresses
// for three names through a proxy in front of a real unbound, with every
// query counted, and reads the lists the admin API serves.
func TestLabTopClientsAndNames(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 1, "", "top: {sample: 1}")
	for _, c := range []struct {
		from, name string
		n          int
	}{{"127.0.0.2", "busy.demo.test.", 30}, {"127.0.0.3", "www.demo.test.", 20}, {"127.0.0.4", "demo.test.", 10}} {
		d := &dns.Client{Net: "udp", Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(c.from)}}}
		for i := range c.n {
			// Mixed case: the lists show names as the cache keys them.
			name := c.name
			if i%2 == 1 {
				name = strings.ToUpper(name[:2]) + name[2:]
			}
			if _, _, err := d.Exchange(dnstest.Query(name, dns.TypeA), l.addr); err != nil {
				t.Fatalf("from %s: %v", c.from, err)
			}
		}
	}
	var got top.List
	waitDesc(t, "the counts to reach the lists", 3*time.Second, func() bool {
		got = l.p.Top(3)
		return len(got.Clients) == 3 && got.Clients[2].Queries >= 10
	})
	want := fmt.Sprint([]top.Client{{Client: "127.0.0.2", Queries: 30}, {Client: "127.0.0.3", Queries: 20}, {Client: "127.0.0.4", Queries: 10}})
	if fmt.Sprint(got.Clients) != want {
		t.Errorf("clients %v, want %v", got.Clients, want)
	}
	names := fmt.Sprint([]top.Name{{Name: "busy.demo.test.", Queries: 30}, {Name: "www.demo.test.", Queries: 20}, {Name: "demo.test.", Queries: 10}})
	if fmt.Sprint(got.Names) != names {
		t.Errorf("names %v, want %v", got.Names, names)
	}
}

// TestLabTopAllocs asserts that counting every query, aggregator included,
// adds no allocation per query to the UDP path.
func TestLabTopAllocs(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	l := startLab(t, 1, "", "top: {sample: 1}")
	if avg := udpAllocsPerQuery(t, l.addr, "www.demo.test."); avg > 0.05 {
		t.Errorf("%.2f allocations per query with every query counted, want 0", avg)
	}
}
