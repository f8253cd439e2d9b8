package config

import (
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Defaults for keys the file leaves out. docs/config.md lists the same
// values for operators; change both together.
const (
	defaultListen       = "127.0.0.1:5300"
	defaultProtocol     = "do53"
	defaultPolicy       = "roundrobin"
	defaultAdminListen  = "127.0.0.1:8053"
	defaultHealthQName  = "health.anyfront.test."
	defaultHealthMode   = "active"
	defaultXDPMode      = "auto"
	defaultDrainComm    = "65535:0" // GRACEFUL_SHUTDOWN, RFC 8326
	defaultWithdraw     = 2 * time.Second
	defaultDrainGrace   = 30 * time.Second
	defaultHoldTime     = 9 * time.Second
	defaultMinHealthy   = 1
	defaultRateV4Prefix = 24
	defaultRateV6Prefix = 56

	// maxInflight caps proxy.max_inflight: in-flight queries of one worker
	// are told apart by their 16-bit DNS ID, and IDs must stay sparse
	// enough to be picked at random without long searches.
	maxInflight = 60000
	// minHealthWindow and maxHealthWindow bound healthcheck.window: the
	// window is kept as ten buckets, so below a second they would be too
	// short to hold a useful sample, and past ten minutes a failure is
	// history, not a reason to probe now.
	minHealthWindow = time.Second
	maxHealthWindow = 10 * time.Minute
	// maxProbeRcode: probes carry no EDNS, so an answer's rcode is the
	// header's 4 bits; extended rcodes (BADVERS and up) cannot occur.
	maxProbeRcode = 15
	// maxPrepend caps AS-path prepending: past a handful it changes
	// nothing about path selection and only lengthens every route.
	maxPrepend = 10
	// maxCacheSize caps cache.size: ten million answers is several GiB,
	// more than one node should hold; a typo of extra digits is refused.
	maxCacheSize = 10_000_000
	// MaxXDPEntries caps cache.xdp_entries at the XDP answer map's size
	// (ebpf.MaxAnswers; a test there keeps the two equal).
	MaxXDPEntries = 64 * 1024
)

// defaultProxy returns the forwarding limits used when proxy keys are absent.
func defaultProxy() Proxy {
	return Proxy{
		Deadline:    defaultDeadline,
		Timeout:     defaultAttemptTimeout,
		MinTimeout:  defaultMinTimeout,
		Retries:     defaultRetries,
		MaxInflight: 16384,
		TCP: TCPLimits{
			MaxConns:           1024,
			MaxConnsPerClient:  64,
			IdleTimeout:        10 * time.Second,
			MaxConnTime:        120 * time.Second,
			MaxQueriesPerConn:  10000,
			MaxInflightPerConn: 100,
			BackendConns:       4,
		},
	}
}

// defaultCache is the packet cache when a pool says nothing: off (size 0),
// with the clamps an operator expects once it is turned on.
func defaultCache() Cache {
	return Cache{
		MaxTTL:         24 * time.Hour,
		MaxNegativeTTL: time.Hour,
		Prefetch:       true,
	}
}

// defaultHealthCheck returns a fresh value each call: the Rcodes slice must
// not be shared between pools, or between configs across reloads.
func defaultHealthCheck() HealthCheck {
	return HealthCheck{
		QName:    defaultHealthQName,
		QType:    dns.TypeA,
		Interval: time.Second,
		Timeout:  500 * time.Millisecond,
		Rise:     2,
		Fall:     2,
		Mode:     defaultHealthMode,
		Rcodes:   []int{dns.RcodeSuccess, dns.RcodeNameError},
		// 3 failures in 10 is well above what a healthy resolver shows
		// (a few SERVFAILs for broken zones), and 10 samples keep one
		// unlucky query on an idle backend from triggering probes.
		FailureRatio: 0.3,
		Window:       10 * time.Second,
		MinSamples:   10,
	}
}

// defaultACL is loopback only, so a node is never an open resolver by
// accident.
func defaultACL() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

func defaultListeners() []Listen {
	return []Listen{{Address: netip.MustParseAddrPort(defaultListen), Protocol: defaultProtocol}}
}

// Valid values of the enumerated keys, in the order messages list them.
var (
	policies    = []string{"roundrobin", "wrandom", "leastoutstanding", "chashed", "firstavailable", "latency"}
	protocols   = []string{"do53", "dot", "doh", "doq"}
	healthModes = []string{"active", "lazy"}
	xdpModes    = []string{"auto", "generic", "driver"}
)

// Query fate defaults (proxy.deadline, timeout, min_timeout, retries; pool
// hedge). The deadline leaves a stub resolver's 1 s retry time to find the
// answer we give; 20 ms..400 ms per attempt covers a LAN backend answering
// from cache (well under a millisecond, so the floor rules) up to a farm
// recursing over the Internet; five attempts make a 5% packet loss cost a
// SERVFAIL about once in three million queries.
const (
	defaultDeadline       = 800 * time.Millisecond
	defaultAttemptTimeout = 400 * time.Millisecond
	defaultMinTimeout     = 20 * time.Millisecond
	defaultRetries        = 4
	// maxRetries keeps a query's attempts in the proxy's fixed array.
	maxRetries             = 7
	defaultHedgePercentile = 95
	defaultHedgeBudget     = 5
	maxHedgeBudget         = 50
)

func defaultHedge() Hedge {
	return Hedge{Enabled: true, Percentile: defaultHedgePercentile, Budget: defaultHedgeBudget}
}
