package bgp

import (
	"net/netip"
	"testing"
)

func TestPathRefusesWhatNoRouterCouldUse(t *testing.T) {
	tests := map[string]Path{
		"IPv6 prefix without next hop":             {Prefix: netip.MustParsePrefix("2001:db8::/48")},
		"IPv6 prefix with an IPv4-mapped next hop": {Prefix: netip.MustParsePrefix("2001:db8::/48"), NextHop: netip.MustParseAddr("::ffff:192.0.2.1")},
		"IPv4 prefix with an IPv6 next hop":        {Prefix: netip.MustParsePrefix("192.0.2.0/24"), NextHop: netip.MustParseAddr("2001:db8::1")},
		"host bits":                                {Prefix: netip.MustParsePrefix("192.0.2.1/24")},
		"bad community":                            {Prefix: netip.MustParsePrefix("192.0.2.0/24"), Communities: []string{"70000:1"}},
	}
	for name, p := range tests {
		if _, err := p.apiPath(65001); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWithCommunityDoesNotShareTheSlice(t *testing.T) {
	base := Path{Communities: make([]string, 1, 4)}
	base.Communities[0] = "65001:1"
	a := base.withCommunity("65001:2")
	b := base.withCommunity("65001:3")
	if a.Communities[1] != "65001:2" || b.Communities[1] != "65001:3" || len(base.Communities) != 1 {
		t.Errorf("a %v b %v base %v", a.Communities, b.Communities, base.Communities)
	}
	if c := a.withCommunity("65001:2"); len(c.Communities) != 2 {
		t.Errorf("duplicate added: %v", c.Communities)
	}
}
