// Package xdpanswer holds the values the proxy publishes to the XDP answer
// cache: an Answer and the AnswerKey the program looks it up by. It is a
// leaf that imports nothing of the loader (package ebpf, which aliases
// these types), so the proxy names them without linking cilium/ebpf.
// Encoding them for the program's maps stays in ebpf.
package xdpanswer

import (
	"fmt"
	"strings"
)

// MaxAnswerSections bounds len(Answer.Sections): the program copies and
// checksums no more (MAX_SECTIONS in ebpf/xdp.h; ebpf's
// TestMapBoundsMatchGo checks the two agree). Bigger answers are rare
// among the hottest and stay with the proxy.
const MaxAnswerSections = 512

// AnswerKey identifies one answer as the XDP program looks it up.
type AnswerKey struct {
	Name  string // lowercased wire-format qname, root label included (<= 255 bytes)
	Type  uint16
	Class uint16
	EDNS  bool // the query carried an OPT record (EDNS version 0 and no options: anything else passes to the proxy)
	DO    bool
	CD    bool
}

// String names the key for errors and logs: "example.com./1/1 edns do".
func (k AnswerKey) String() string {
	var b strings.Builder
	b.WriteString(presentName(k.Name))
	fmt.Fprintf(&b, "/%d/%d", k.Type, k.Class)
	for _, f := range []struct {
		on   bool
		name string
	}{{k.EDNS, " edns"}, {k.DO, " do"}, {k.CD, " cd"}} {
		if f.on {
			b.WriteString(f.name)
		}
	}
	return b.String()
}

// presentName turns a wire name into dotted text, as far as it parses
// (other bytes are escaped), for messages only.
func presentName(wire string) string {
	var b strings.Builder
	for i := 0; i < len(wire); {
		l := int(wire[i])
		if l == 0 || l&0xc0 != 0 || i+1+l > len(wire) {
			break
		}
		for _, c := range []byte(wire[i+1 : i+1+l]) {
			if c > ' ' && c < 0x7f && c != '.' && c != '\\' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "\\%03d", c)
			}
		}
		b.WriteByte('.')
		i += 1 + l
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// Answer is one cached answer the XDP program may serve.
type Answer struct {
	Key AnswerKey
	// Flags are header bytes 2-3 (big endian) of the answer; XDP takes RD
	// from the query, the rest from here.
	Flags uint16
	// Counts are ANCOUNT, NSCOUNT and ARCOUNT of Sections.
	Counts [3]uint16
	// Sections are the answer, authority and additional records exactly
	// as they follow the question in the stored answer, TTLs already aged.
	// Compression pointers point into the message as stored, which stays
	// valid because the client's question has the same length (same name,
	// maybe other case).
	Sections []byte
	// Expires is the CLOCK_MONOTONIC time in nanoseconds (what
	// bpf_ktime_get_ns returns) from which XDP must not serve the answer.
	Expires int64
}
