package ebpf

import (
	"net/netip"
	"os"
	"testing"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
)

// FuzzXDPAgreesWithParser is the differential fuzz target of the XDP fast
// path (issue 8): for any UDP payload sent to a VIP, the XDP program drops
// it as malformed exactly when the proxy's parser would drop it without an
// answer. XDP dropping more would silence queries the proxy answers
// (FORMERR, NOTIMP, or a real answer); dropping less would only cost the
// proxy work, but the two are meant to be one definition of a query, so
// both directions count. Loading the program needs root; elsewhere the
// target skips.
func FuzzXDPAgreesWithParser(f *testing.F) {
	for _, s := range [][]byte{
		plainQuery("www.example.", dns.TypeA, nil),
		plainQuery("www.example.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, true) }),
		{},
		{0x12, 0x34, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 0},                       // QDCOUNT 0
		{0x12, 0x34, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1},        // QR=1
		{0x12, 0x34, 0x29, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1},        // UPDATE, root SOA
		{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, // compression pointer
		{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'w', 'w'},          // name cut short
	} {
		f.Add(s)
	}
	// The largest name: 127 labels of one byte and the root (255 bytes),
	// and one byte more.
	for _, labels := range []int{127, 128} {
		q := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
		for i := 0; i < labels; i++ {
			q = append(q, 1, 'a')
		}
		f.Add(append(q, 0, 0, 1, 0, 1))
	}
	if os.Geteuid() != 0 {
		f.Skip("loading the XDP program needs root")
	}
	xdp, err := NewRunner(&config.XDP{Mode: "generic", VIPs: []netip.AddrPort{vip4}})
	if err != nil {
		f.Fatalf("load the XDP program: %v", err)
	}
	f.Cleanup(func() { xdp.Close() })
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > 1400 { // one Ethernet frame, no fragments
			return
		}
		action, _, err := xdp.Run(frame{src: client4, dst: vip4, payload: payload}.bytes())
		if err != nil {
			t.Fatal(err)
		}
		var v dnswire.View
		perr := v.ParseQuery(payload)
		proxyDrops := perr != nil && perr != dnswire.ErrOpcode && perr != dnswire.ErrQDCount
		switch {
		case action != XDP_DROP && action != XDP_PASS:
			t.Fatalf("XDP action %d for a query with no answer published and no rate limit", action)
		case (action == XDP_DROP) != proxyDrops:
			t.Errorf("XDP action %d, the proxy's parser says %v, for\n% x", action, perr, payload)
		}
	})
}
