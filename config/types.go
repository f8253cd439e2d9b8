// Package config reads anyfront's YAML configuration into typed, validated,
// immutable structs. It does no I/O beyond reading the file.
package config

import (
	"net/netip"
	"time"
)

// Config is a whole validated configuration. Components receive the part
// they need and must not modify it.
type Config struct {
	// File is the path the configuration was loaded from.
	File   string
	Listen []Listen
	// ACL lists who may query. Default: loopback only (127.0.0.0/8, ::1/128).
	ACL   []netip.Prefix
	Proxy Proxy
	// Pools by name; PoolNames keeps the file's order.
	Pools     map[string]*Pool
	PoolNames []string
	Rules     []Rule
	// DynBlocks is nil when the file has no dynamic_blocks section.
	DynBlocks *DynBlocks
	Admin     Admin
	Node      Node
	BGP       *BGP // nil when the file has no bgp section
	XDP       *XDP // nil when the file has no xdp section
	// Log, QueryLog and Top: see observe.go. QueryLog is nil when the
	// file has no query_log section.
	Log      Log
	QueryLog *QueryLog
	Top      Top
}

// Listen is one front-end address; do53 serves UDP and TCP on it.
type Listen struct {
	Address  netip.AddrPort
	Protocol string // do53 (default), dot, doh, doq
	TLS      *TLS   // required for dot, doh, doq
	// Path is where DoH answers; default "/dns-query". doh only.
	Path string
	// ProxyProtocol makes connections from ProxyProtocolFrom start with a
	// PROXY protocol v2 header whose source address then stands for the
	// client (ACL, rules, per-client bounds). Connections from elsewhere
	// are served as plain ones: a header is never trusted from them. Stream
	// transports only (do53's TCP side, dot, doh).
	ProxyProtocol     bool
	ProxyProtocolFrom []netip.Prefix // required when ProxyProtocol is set
	Line              int
}

// TLS names certificate and key files.
type TLS struct {
	Cert string
	Key  string
	// Certs are more certificate/key pairs a listener serves beside Cert
	// and Key (say an RSA one beside an ECDSA one): each handshake gets an
	// ECDSA certificate when the client supports it, RSA otherwise.
	// Listeners only; always empty for admin.tls.
	Certs []CertPair
	// TicketKeyFile, when set, holds the session ticket keys, one per line,
	// the first encrypting and all decrypting: nodes sharing the file
	// resume each other's sessions. Empty: Go's own keys, random per
	// listener and rotated daily. Listeners only.
	TicketKeyFile string
	Line          int // of the tls: key, for errors about the files
}

// CertPair is one certificate file and its key file.
type CertPair struct {
	Cert, Key string
	Line      int
}

// Pairs returns every certificate/key pair, Cert and Key first.
func (t *TLS) Pairs() []CertPair {
	return append([]CertPair{{Cert: t.Cert, Key: t.Key, Line: t.Line}}, t.Certs...)
}

// Proxy holds forwarding limits. Every field has a default (see defaults.go).
type Proxy struct {
	// Deadline is a query's whole budget, every attempt included: when it
	// passes with no answer, the client gets SERVFAIL (or a stale answer).
	// Default 800ms, well under a stub resolver's 1 s retry.
	Deadline time.Duration
	// Timeout is the ceiling of one attempt's timeout. Each attempt times
	// out after its backend's measured retransmission timeout (smoothed
	// round-trip time plus four times its variation, RFC 6298), clamped
	// to [MinTimeout, Timeout]; then the query is sent again, to another
	// backend where there is one. Default 400ms.
	Timeout time.Duration
	// MinTimeout is the floor of an attempt's timeout. Default 20ms.
	MinTimeout time.Duration
	// Retries is the most attempts a query gets after its first, within
	// its deadline. Default 4, at most 7.
	Retries int
	// Workers is the number of UDP workers (SO_REUSEPORT sockets) per
	// listen address. 0 means half the CPUs (at least 1): each worker
	// keeps two threads busy, one reading clients, one reading backends.
	Workers int
	// MaxInflight bounds queries awaiting a backend answer, per worker.
	// Default 16384, at most 60000 (IDs are 16 bits).
	MaxInflight int
	TCP         TCPLimits
}

// TCPLimits bounds client and backend TCP connections.
type TCPLimits struct {
	MaxConns           int           // total client connections; default 1024
	MaxConnsPerClient  int           // per client address; default 64
	IdleTimeout        time.Duration // default 10s
	MaxConnTime        time.Duration // total lifetime of one client connection; default 120s
	MaxQueriesPerConn  int           // default 10000
	MaxInflightPerConn int           // pipelined queries in flight per client connection; default 100
	BackendConns       int           // reused connections per backend; default 4
}

// Pool is a set of backends with one load-balancing policy.
type Pool struct {
	Name        string
	Policy      string // roundrobin (default) | wrandom | leastoutstanding | chashed | firstavailable | latency
	Backends    []Backend
	HealthCheck HealthCheck
	Cache       Cache
	// ECS is the pool's EDNS Client Subnet handling (RFC 7871); the zero
	// value leaves ECS alone.
	ECS   ECS
	Hedge Hedge
	Line  int
}

// Hedge configures hedged queries: when a query's first attempt has not
// been answered by the pool's recent Percentile latency, a copy goes to
// another backend and the first valid answer wins.
type Hedge struct {
	Enabled bool // default true
	// Percentile of the pool's recent answer latency after which a first
	// attempt is hedged; default 95 (50 to 99.9).
	Percentile float64
	// Budget caps hedges at this percentage of the pool's queries (a token
	// bucket), so hedging never multiplies the load on a struggling farm;
	// default 5 (0 to 50).
	Budget float64
}

// ECS configures EDNS Client Subnet for a pool's queries.
type ECS struct {
	// Add puts the client's address, cut to V4Prefix or V6Prefix bits,
	// into queries that carry no ECS option (adding an OPT record when
	// the query has none, removed again from the answer).
	Add bool
	// Override replaces an ECS option the client sent with its own
	// address cut the same way, instead of passing it on.
	Override bool
	V4Prefix int // default 24; 0 to 32
	V6Prefix int // default 56; 0 to 128
}

// Backend is one resolver behind anyfront.
type Backend struct {
	Name    string
	Address netip.AddrPort
	Weight  int // default 1
	Order   int // for firstavailable; default: position in the list (1-based)
	// ProxyProtocol prefixes every query sent to the backend (each UDP
	// datagram, each TCP connection) with a PROXY protocol v2 header
	// naming the client, and health checks with a LOCAL one.
	ProxyProtocol bool
	Line          int
}

// HealthCheck configures how a pool's backends are probed.
type HealthCheck struct {
	QName    string        // default "health.anyfront.test." (any answer NOERROR/NXDOMAIN is healthy)
	QType    uint16        // default A; YAML takes a type mnemonic ("A", "AAAA", "SOA")
	Interval time.Duration // default 1s
	Timeout  time.Duration // default 500ms
	Rise     int           // default 2
	Fall     int           // default 2
	Mode     string        // active (default) | lazy
	// Rcodes that count as healthy; default NOERROR and NXDOMAIN. YAML takes names.
	Rcodes []int
	TCP    bool // probe over TCP instead of UDP
	// FailureRatio, Window and MinSamples decide when live traffic says a
	// backend is in trouble: when at least MinSamples queries were sent to
	// it over the last Window and at least FailureRatio of them failed
	// (timeout, SERVFAIL, unreachable, bad answer), it is probed at once,
	// in either mode; in lazy mode this is what starts probing at all.
	FailureRatio float64       // default 0.3; in (0, 1]
	Window       time.Duration // default 10s; 1s to 10m
	MinSamples   int           // default 10
}

// Cache configures a pool's packet cache.
type Cache struct {
	Size       int           // entries; 0 disables (default 0); at most 10,000,000
	ServeStale time.Duration // default 0 (off)
	XDPEntries int           // default 0 (off)
	// MinTTL and MaxTTL clamp how long an answer is cached (defaults 0
	// and 24h); MaxNegativeTTL caps NXDOMAIN/NODATA (default 1h, RFC
	// 2308's SOA minimum otherwise); TemporaryFailureTTL caches SERVFAIL
	// (default 0: never).
	MinTTL              time.Duration
	MaxTTL              time.Duration
	MaxNegativeTTL      time.Duration
	TemporaryFailureTTL time.Duration
	// Prefetch refreshes an entry still being asked for in the last 10%
	// of its TTL, so popular names never miss (default true).
	Prefetch bool
}

// Rule is one first-match-wins rule.
type Rule struct {
	Match  Match
	Action Action
	Line   int
}

// Match is what a rule matches; every non-empty field must match. An empty
// Match matches every query.
type Match struct {
	QName       []string // exact names, lowercased, fully qualified
	QNameSuffix []string // suffixes, lowercased, fully qualified
	QType       []uint16
	Client      []netip.Prefix
	// Opcode lists the opcodes matched (0 QUERY, 4 NOTIFY, 5 UPDATE...).
	// A rule that names no opcode anywhere matches only QUERY, so other
	// opcodes get NOTIMP unless a rule asks for them (RFC 8906).
	Opcode []int
	// RD, when set, matches the query's recursion-desired flag.
	RD *bool
	// Transport lists what the query came over: udp, tcp, dot, doh, doq.
	Transport []string
	// Probability, when above 0, matches that fraction of the queries
	// the other conditions match, at random (0, 1].
	Probability float64
	// All, Any and Not combine nested matches: every one of All, at
	// least one of Any, and not Not.
	All []Match
	Any []Match
	Not *Match
}

// Action is what a matching rule does. Exactly one kind is set, except
// that NoCache may go with Pool (alone it forwards to the default pool).
// Log and RateLimit (while under its rate) go on to the next rule; so does
// Truncate for queries that did not come over UDP.
type Action struct {
	Pool     string
	Refuse   bool
	Drop     bool
	NXDomain bool
	// Rcode, when set, answers with this rcode (0-15).
	Rcode *int
	Spoof []netip.Addr
	// SpoofCNAME answers with a CNAME to this name (lowercase, fully
	// qualified).
	SpoofCNAME string
	// Truncate answers UDP queries with TC=1, so the client retries
	// over TCP.
	Truncate  bool
	RateLimit *RuleRateLimit
	// NoCache forwards without looking up or storing the answer in the
	// pool's packet cache.
	NoCache bool
	// Log writes an Info line for matching queries, at most LogRate per
	// second per rule, and goes on to the next rule.
	Log bool
}

// RuleRateLimit limits the queries of each source prefix that reach a
// rule; queries over the rate get Over, the others go on to the next rule.
type RuleRateLimit struct {
	QPS      int
	Burst    int    // default QPS
	V4Prefix int    // default 32
	V6Prefix int    // default 64
	Over     string // drop (default) | refuse | truncate
	// MaxSources bounds the per-prefix table (least recently seen
	// prefixes are forgotten first); default 65536.
	MaxSources int
}

// DynBlocks configures dynamic blocks: per source prefix, sliding-window
// detectors that block a prefix for a while when it goes over a rate.
type DynBlocks struct {
	V4Prefix int // default 32
	V6Prefix int // default 64
	// Action is what blocked queries get: drop (default) or refuse.
	Action string
	// MaxBlocks bounds blocks in force at once; default 10000.
	MaxBlocks int
	// MaxTracked bounds the prefixes measured at once (least recently
	// seen forgotten first); default 65536.
	MaxTracked int
	Detectors  []Detector
	Line       int
}

// Detector is one sliding-window measure of a source prefix.
type Detector struct {
	// Kind is queries (query rate), rcode (rate of answers with Rcode)
	// or response_bytes (bytes of answers per second).
	Kind  string
	Rcode int
	// Rate is per second, averaged over Window; above it the prefix is
	// blocked for BlockFor.
	Rate     float64
	Window   time.Duration // default 10s
	BlockFor time.Duration // default 60s
	Line     int
}

// Admin configures the admin API.
type Admin struct {
	Listen    string // default "127.0.0.1:8053"
	TokenFile string // the operate token; empty: mutating calls are refused
	// TokenFileLine is the line of token_file, for errors about the file.
	TokenFileLine int
	// ReadTokenFile holds the read token: with it (or the operate token)
	// a client may read; empty: no read-only role.
	ReadTokenFile     string
	ReadTokenFileLine int
	// FleetFile lists the fleet's nodes for the dashboard's fleet page
	// (the anyfrontctl -fleet format); empty: no fleet page.
	FleetFile string
	// TLS serves the API over HTTPS with this certificate; nil: plain HTTP.
	TLS *TLS
}

// BGP configures the embedded BGP speaker.
type BGP struct {
	ASN           uint32
	RouterID      netip.Addr
	ListenPort    int // 0 (default): do not listen, connect out only
	Peers         []BGPPeer
	Announce      []Announce
	WithdrawAfter time.Duration // default 2s
	Drain         Drain
	Line          int
}

// BGPPeer is one BGP neighbour.
type BGPPeer struct {
	Address      netip.Addr
	ASN          uint32
	HoldTime     time.Duration // default 9s; at least 3s
	PasswordFile string        // TCP-MD5 password, read from a file
	Multihop     int           // TTL; 0 means directly connected
	// Port is the neighbour's TCP port; default 179.
	Port int
	// TTLSecurity turns on GTSM (RFC 5082): send with TTL 255 and accept
	// only packets that crossed at most Multihop routers (1 when 0).
	TTLSecurity bool
	Line        int
}

// Announce is one prefix announced while its pools are healthy.
type Announce struct {
	Prefix             netip.Prefix
	NextHop            netip.Addr // zero: the session's local address
	Pools              []string
	MinHealthy         int     // default 1
	MinHealthyFraction float64 // 0: unused
	Communities        []string
	MED                uint32
	Prepend            int
	Line               int
}

// Drain configures graceful BGP drain (RFC 8326).
type Drain struct {
	Community string        // default "65535:0"
	Grace     time.Duration // default 30s
	// Prepend adds this many extra AS-path prepends while draining, for
	// routers that do not act on the community; default 0.
	Prepend int
	// MED replaces the announcement's MED while draining when not 0.
	MED uint32
}

// XDP configures the XDP fast path.
type XDP struct {
	Interface string
	Mode      string // auto (default) | generic | driver
	VIPs      []netip.AddrPort
	RateLimit RateLimit
	Blocklist []netip.Prefix
	Line      int
}

// RateLimit configures per-source-prefix token buckets in XDP.
type RateLimit struct {
	QPS      int // 0: no rate limit
	Burst    int // queries a prefix may send at once; default QPS (one second's worth)
	V4Prefix int // default 24
	V6Prefix int // default 56
	TCSlip   int // 0 (default): drop every over-limit query; N: answer every Nth with TC=1
}
