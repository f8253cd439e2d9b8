package config

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// maxIfNameLen is IFNAMSIZ (16) less the terminating NUL.
const maxIfNameLen = 15

// maxRateQPS bounds ratelimit.qps and burst (see xdp below).
const maxRateQPS = 1_000_000_000

// xdp decodes the xdp section; line is that of the "xdp:" key.
func (d *decoder) xdp(n *yaml.Node, line int) *XDP {
	x := &XDP{Mode: defaultXDPMode, RateLimit: RateLimit{V4Prefix: defaultRateV4Prefix, V6Prefix: defaultRateV6Prefix}, Line: line}
	f, ok := d.fields(n, "xdp", "interface", "mode", "vips", "ratelimit", "blocklist")
	if !ok {
		return x
	}
	f.line = line
	if in := f.require("interface"); in != nil && f.str("interface", &x.Interface) {
		if x.Interface == "" || len(x.Interface) > maxIfNameLen || strings.ContainsAny(x.Interface, "/ \t") {
			d.errorf(in, "xdp.interface: %q is not a valid interface name", x.Interface)
		}
	}
	f.enum("mode", "xdp mode", xdpModes, &x.Mode)
	// VIPs say which traffic the XDP program passes to the proxy; with
	// none it would pass no DNS at all.
	items, ok := f.list("vips")
	if f.get("vips") == nil || ok && len(items) == 0 {
		d.errorAt(f.keyLine("vips"), "xdp: needs at least one vip (IP:port the proxy serves)")
	}
	for _, it := range items {
		if v, ok := d.unicastAddrPort(it, f.at("vips")); ok {
			x.VIPs = append(x.VIPs, v)
		}
	}
	if r := f.get("ratelimit"); r != nil {
		if rf, ok := d.fields(r, "xdp.ratelimit", "qps", "burst", "v4_prefix", "v6_prefix", "tc_slip"); ok {
			// Past maxRateQPS the per-query interval (1s/qps) is under a
			// nanosecond, the resolution of the kernel's token buckets.
			rf.int("qps", 0, maxRateQPS, &x.RateLimit.QPS)
			rf.int("burst", 1, maxRateQPS, &x.RateLimit.Burst)
			rf.int("v4_prefix", 1, 32, &x.RateLimit.V4Prefix)
			rf.int("v6_prefix", 1, 128, &x.RateLimit.V6Prefix)
			rf.int("tc_slip", 0, noMax, &x.RateLimit.TCSlip)
		}
	}
	if x.RateLimit.Burst == 0 {
		x.RateLimit.Burst = x.RateLimit.QPS
	}
	x.Blocklist, _ = each(f, "blocklist", d.prefix)
	return x
}
