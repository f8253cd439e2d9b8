package healthcheck

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"

	"github.com/miekg/dns"
)

const (
	headerLen = 12
	// maxQuery bounds a packed probe: a 12-byte header, a name of at most
	// 255 bytes, type and class.
	maxQuery = 512
)

// probeKey is how an answer finds its probe: the address it came from and
// its ID. At most one probe per backend is in flight, so this is unique
// even for backends that share an address (launch draws another ID).
type probeKey struct {
	addr netip.AddrPort
	id   uint16
}

// randID draws a probe ID. math/rand/v2's global generator is ChaCha8,
// seeded by the runtime: not predictable from the outside, and cheap.
func randID() uint16 { return uint16(rand.Uint32()) }

func putID(msg []byte, id uint16) { binary.BigEndian.PutUint16(msg, id) }

// packQuery returns the probe for name and qtype with ID 0 and RD set, as a
// resolver sees from a stub. It carries no EDNS: a probe needs no large
// answers, and without OPT the header's 4-bit rcode is the whole rcode.
func packQuery(name string, qtype uint16) ([]byte, error) {
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	m.Id = 0
	q, err := m.Pack()
	if err != nil {
		return nil, err
	}
	if len(q) > maxQuery {
		return nil, errors.New("probe too large")
	}
	return q, nil
}

// Why an answer is not acceptable; static, so judging allocates nothing.
const (
	badShort       = "shorter than a DNS header"
	badNotResponse = "not a response (QR=0)"
	badOpcode      = "opcode is not QUERY"
	badQDCount     = "question count is not 1"
	badQuestion    = "answer is for another question"
	badHeaderOnly  = "header-only answer"
)

// judge decides a probe's result from its answer. The caller has matched
// the answer's ID and source address to the probe.
func judge(msg []byte, set *settings) (r result, rcode int, detail string) {
	if len(msg) < headerLen {
		return resultBadAnswer, 0, badShort
	}
	flags := msg[2]
	switch {
	case flags&0x80 == 0:
		return resultBadAnswer, 0, badNotResponse
	case (flags>>3)&0x0F != dns.OpcodeQuery:
		return resultBadAnswer, 0, badOpcode
	case binary.BigEndian.Uint16(msg[4:]) != 1:
		return resultBadAnswer, 0, badQDCount
	case !sameQuestion(msg[headerLen:], set.question()):
		return resultBadAnswer, 0, badQuestion
	}
	rcode = int(msg[3] & 0x0F)
	truncated := flags&0x02 != 0
	an, ns := binary.BigEndian.Uint16(msg[6:]), binary.BigEndian.Uint16(msg[8:])
	// A NOERROR or NXDOMAIN with neither answer nor SOA is what broken
	// middleboxes send; the proxy counts it as a failure too. A truncated
	// answer may be cut to the header, and still shows a live server.
	if (rcode == dns.RcodeSuccess || rcode == dns.RcodeNameError) && !truncated && an == 0 && ns == 0 {
		return resultBadAnswer, rcode, badHeaderOnly
	}
	if set.healthy&(1<<rcode) == 0 {
		return resultRcode, rcode, ""
	}
	return resultSuccess, rcode, ""
}

// sameQuestion reports whether the answer's question section starts with
// want: the name compared ignoring ASCII case (resolvers may echo it
// 0x20-mixed), type and class exactly.
func sameQuestion(got, want []byte) bool {
	if len(got) < len(want) || len(want) < 4 {
		return false
	}
	name := len(want) - 4
	for i := range name {
		if lower(got[i]) != lower(want[i]) {
			return false
		}
	}
	return string(got[name:len(want)]) == string(want[name:])
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
