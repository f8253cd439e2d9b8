package testlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// Zone data every lab resolver serves. Tests and the demo rely on these
// names and addresses; change them only together with their users.
const (
	// DemoZone is the zone the demo and most tests query.
	DemoZone = "demo.test."
	// BigName has about 30 TXT records of about 90 characters: the answer
	// (over 2 KB) is larger than 512 and 1232 bytes, so it comes back with
	// TC=1 over UDP and whole over TCP.
	BigName = "big.demo.test."
	// RandZone answers NOERROR with RandA for every name under it, so
	// benchmarks can ask random names that always miss a cache.
	RandZone = "rand.demo.test."
	// RandA and RandAAAA are the addresses every name under RandZone
	// resolves to.
	RandA    = "192.0.2.20"
	RandAAAA = "2001:db8::20"
	// HealthName is anyfront's default health-check name; it answers
	// NOERROR with HealthA.
	HealthName = "health.anyfront.test."
	// HealthTestName is a shorter health-check name, answered the same way.
	HealthTestName = "health.test."
	// HealthA is the address both health-check names resolve to.
	HealthA = "192.0.2.1"
)

// bigRecords is how many TXT records BigName has, and bigRecordLen the
// length of each one's text.
const (
	bigRecords   = 30
	bigRecordLen = 90
)

// zoneData is what every lab resolver serves. `local-zone: "." static` makes
// the resolver authoritative for everything, so it answers unknown names with
// NXDOMAIN at once and never recurses: the lab has no network and must never
// send a packet off the machine. The root SOA makes those NXDOMAIN answers
// carry an authority section, since anyfront treats header-only
// NXDOMAIN/NOERROR answers as a broken backend.
var zoneData = []string{
	`local-zone: "." static`,
	`local-data: ". 3600 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 60"`,

	`local-zone: "demo.test." static`,
	`local-data: "demo.test. 3600 IN SOA ns.demo.test. hostmaster.demo.test. 1 3600 900 604800 60"`,
	`local-data: "demo.test. 3600 IN NS ns.demo.test."`,
	`local-data: "ns.demo.test. 3600 IN A 192.0.2.53"`,
	`local-data: "demo.test. 300 IN A 192.0.2.10"`,
	`local-data: "demo.test. 300 IN AAAA 2001:db8::10"`,
	`local-data: "www.demo.test. 300 IN A 192.0.2.11"`,
	// The demo suggests `dig www.demo.test AAAA`; it should show an answer.
	`local-data: "www.demo.test. 300 IN AAAA 2001:db8::11"`,

	// redirect: the apex's records answer for every name below it. The SOA
	// keeps NODATA answers (e.g. TXT) from being header-only.
	`local-zone: "rand.demo.test." redirect`,
	`local-data: "rand.demo.test. 3600 IN SOA ns.demo.test. hostmaster.demo.test. 1 3600 900 604800 60"`,
	`local-data: "rand.demo.test. 60 IN A ` + RandA + `"`,
	`local-data: "rand.demo.test. 60 IN AAAA ` + RandAAAA + `"`,

	// Health-check names, each in a zone with an SOA so that other types
	// get a proper NODATA answer. TTL 0: a health answer is never reused.
	`local-zone: "anyfront.test." static`,
	`local-data: "anyfront.test. 3600 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 60"`,
	`local-data: "health.anyfront.test. 0 IN A ` + HealthA + `"`,
	`local-zone: "health.test." static`,
	`local-data: "health.test. 3600 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 60"`,
	`local-data: "health.test. 0 IN A ` + HealthA + `"`,
}

// bigTXT returns the TXT records of BigName as local-data lines. Each text
// is distinct (unbound would merge identical records) and exactly
// bigRecordLen characters long.
func bigTXT() []string {
	lines := make([]string, 0, bigRecords)
	for i := 1; i <= bigRecords; i++ {
		text := fmt.Sprintf("record %02d of %d, padding to make the answer larger than any UDP buffer: ", i, bigRecords)
		text += strings.Repeat("x", bigRecordLen-len(text))
		// Single quotes outside, because the TXT text needs double quotes.
		lines = append(lines, fmt.Sprintf(`local-data: '%s 300 IN TXT "%s"'`, BigName, text))
	}
	return lines
}

// extraLine turns one UnboundOptions.ExtraLocalData entry into a config line.
// An entry is either a resource record ("x.demo.test. 60 IN A 192.0.2.9"),
// written as local-data, or a whole "local-data:"/"local-zone:"/
// "local-data-ptr:" line, written as is.
func extraLine(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "\r\n") {
		return "", fmt.Errorf("extra local data %q: must be one non-empty line", s)
	}
	for _, kw := range []string{"local-data:", "local-zone:", "local-data-ptr:"} {
		if strings.HasPrefix(s, kw) {
			return s, nil
		}
	}
	if strings.Contains(s, "'") {
		return "", fmt.Errorf("extra local data %q: a bare record cannot contain a single quote; write the whole local-data: line", s)
	}
	return "local-data: '" + s + "'", nil
}

// unboundConf is everything the config file needs besides zone data.
type unboundConf struct {
	dir       string // temp dir: pidfile, log, control socket
	addr      netip.Addr
	port      int
	threads   int
	verbosity int
	extra     []string // config lines from ExtraLocalData
	// pp, logQueries and stub: see UnboundOptions (unbound_pp.go).
	pp         bool
	logQueries bool
	stub       *SubnetStub
	acl        []string
}

// render returns the unbound.conf text.
func (c unboundConf) render() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by internal/testlab: a resolver for tests that never leaves loopback.")
	w("server:")
	w("    verbosity: %d", c.verbosity)
	w("    num-threads: %d", c.threads)
	w("    interface: %s@%d", c.addr, c.port)
	w("    port: %d", c.port)
	w("    do-ip4: yes")
	w("    do-ip6: no")
	w("    do-udp: yes")
	w("    do-tcp: yes")
	// Several lab resolvers (and restarts) bind side by side; reuseport also
	// spreads UDP load over threads.
	w("    so-reuseport: yes")
	w("    access-control: 127.0.0.0/8 allow")
	// Foreground, no privilege drop, everything in the temp dir: the lab
	// runs unprivileged in CI containers and must leave nothing behind.
	w("    do-daemonize: no")
	w("    chroot: \"\"")
	w("    username: \"\"")
	w("    directory: %q", c.dir)
	w("    pidfile: %q", c.dir+"/unbound.pid")
	w("    use-syslog: no")
	w("    logfile: %q", c.dir+"/unbound.log")
	w("    log-time-ascii: yes")
	// Iterator only and no trust anchor: there is nothing to validate and
	// nowhere to recurse to (the root is a static local zone below).
	modules := "iterator"
	if c.stub != nil {
		modules = "subnetcache iterator"
	}
	w("    module-config: %q", modules)
	w("    minimal-responses: yes")
	// Benchmarks and load tests send far more than a real client would.
	w("    ratelimit: 0")
	w("    ip-ratelimit: 0")
	w("    incoming-num-tcp: 1000")
	w("    statistics-cumulative: no")
	// Counters by query type (num.query.type.A ...) let tests tell load
	// from health probes of another type.
	w("    extended-statistics: yes")
	for _, l := range zoneData {
		w("    %s", l)
	}
	for _, l := range bigTXT() {
		w("    %s", l)
	}
	for _, l := range c.extra {
		w("    %s", l)
	}
	for _, l := range c.optionLines() {
		w("    %s", l)
	}
	for _, l := range c.stubClause() {
		w("%s", l)
	}
	// Stats() uses unbound-control over a unix socket in the temp dir:
	// no certificates to generate, no TCP port to allocate.
	w("remote-control:")
	w("    control-enable: yes")
	w("    control-interface: %q", c.dir+"/control.sock")
	w("    control-use-cert: no")
	return b.String()
}
