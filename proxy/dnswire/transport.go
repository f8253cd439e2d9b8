package dnswire

// Transport is what a query came over (match.transport, the truncate
// action, the query log).
type Transport uint8

const (
	UDP Transport = 1 << iota
	TCP
	DoT
	DoH
	DoQ
)

// Transports are the transports by their config name.
var Transports = map[string]Transport{"udp": UDP, "tcp": TCP, "dot": DoT, "doh": DoH, "doq": DoQ}

// TransportName is t's config name.
func TransportName(t Transport) string {
	for name, bit := range Transports {
		if bit == t {
			return name
		}
	}
	return "unknown"
}
