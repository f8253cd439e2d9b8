package proxy

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/policy"
)

// actionKind is what a matching rule does.
type actionKind uint8

const (
	actForward actionKind = iota // to the rule's pool
	actRefuse
	actDrop
	actSpoof
)

// spoofTTL is the TTL of spoofed answers: short, so a rule change is seen
// soon by clients' caches.
const spoofTTL = 60

// rule is a compiled first-match-wins rule. Every non-empty set must match.
type rule struct {
	names    nameSet // exact names
	suffixes nameSet
	qtypes   []uint16
	clients  []netip.Prefix
	kind     actionKind
	pool     *poolSnap
	spoof4   [][4]byte
	spoof6   [][16]byte
	hits     *atomic.Uint64
	line     int
}

// nameSet holds wire-format names, found by hash then checked byte for byte:
// a lookup costs one hash per label boundary and a binary search, not a scan
// of the set, and allocates nothing.
type nameSet struct {
	hashes []uint64 // sorted
	names  [][]byte // names[i] has hashes[i]
}

func newNameSet(names []string) nameSet {
	type entry struct {
		h uint64
		n []byte
	}
	var es []entry
	for _, n := range names {
		w := wireName(n)
		es = append(es, entry{policy.HashName(w), w})
	}
	slices.SortFunc(es, func(a, b entry) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	var s nameSet
	for _, e := range es {
		s.hashes = append(s.hashes, e.h)
		s.names = append(s.names, e.n)
	}
	return s
}

func (s *nameSet) empty() bool { return len(s.hashes) == 0 }

// has reports whether the lowercase wire name w is in the set.
func (s *nameSet) has(w []byte) bool {
	h := policy.HashName(w)
	i, _ := slices.BinarySearch(s.hashes, h)
	for ; i < len(s.hashes) && s.hashes[i] == h; i++ {
		if string(s.names[i]) == string(w) {
			return true
		}
	}
	return false
}

// hasSuffixOf reports whether any suffix of w at a label boundary (w itself
// and the root included) is in the set.
func (s *nameSet) hasSuffixOf(w []byte) bool {
	for i := 0; i < len(w); i += int(w[i]) + 1 {
		if s.has(w[i:]) {
			return true
		}
		if w[i] == 0 {
			break
		}
	}
	return false
}

// wireName turns a lowercase presentation name ("example.com.") into wire
// format. Config validation has already checked the labels.
func wireName(name string) []byte {
	var w []byte
	for _, l := range strings.Split(strings.TrimSuffix(strings.ToLower(name), "."), ".") {
		if l == "" {
			continue
		}
		w = append(w, byte(len(l)))
		w = append(w, l...)
	}
	return append(w, 0)
}

// compileRules turns the config's rules into the snapshot's. hits carries
// the per-rule counters across rebuilds of the same config.
func compileRules(cfg []config.Rule, pools map[string]*poolSnap, hits []atomic.Uint64) []rule {
	out := make([]rule, 0, len(cfg))
	for i, rc := range cfg {
		r := rule{
			names:    newNameSet(rc.Match.QName),
			suffixes: newNameSet(rc.Match.QNameSuffix),
			qtypes:   rc.Match.QType,
			clients:  rc.Match.Client,
			hits:     &hits[i],
			line:     rc.Line,
		}
		a := rc.Action
		switch {
		case a.Pool != "":
			r.kind, r.pool = actForward, pools[a.Pool]
		case a.Refuse:
			r.kind = actRefuse
		case a.Drop:
			r.kind = actDrop
		case len(a.Spoof) > 0:
			r.kind = actSpoof
			for _, ip := range a.Spoof {
				if ip.Is4() || ip.Is4In6() {
					r.spoof4 = append(r.spoof4, ip.Unmap().As4())
				} else {
					r.spoof6 = append(r.spoof6, ip.As16())
				}
			}
		}
		out = append(out, r)
	}
	return out
}

// matchRule returns the first rule that matches, or nil.
func matchRule(rules []rule, v *msgView, client netip.Addr) *rule {
	if len(rules) == 0 {
		return nil
	}
	client = client.Unmap()
	for i := range rules {
		r := &rules[i]
		if !r.names.empty() && !r.names.has(v.name()) {
			continue
		}
		if !r.suffixes.empty() && !r.suffixes.hasSuffixOf(v.name()) {
			continue
		}
		if len(r.qtypes) > 0 && !slices.Contains(r.qtypes, v.qtype) {
			continue
		}
		if len(r.clients) > 0 && !prefixesContain(r.clients, client) {
			continue
		}
		r.hits.Add(1)
		return r
	}
	return nil
}

func prefixesContain(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// appendSpoof appends an answer made from the rule's addresses: A records
// for an A query, AAAA for AAAA, and NOERROR with no answer for any other
// type, as a resolver would answer a name that has only addresses.
func appendSpoof(dst, query []byte, v *msgView, r *rule) []byte {
	start := len(dst)
	dst = appendReply(dst, query, v, rcodeNoError)
	// appendReply wrote header, question and maybe OPT; the answers go
	// between question and OPT, so rebuild the tail.
	tailAt := start + v.qEnd
	var opt []byte
	if v.hasOPT {
		opt = append(opt, dst[tailAt:]...)
		dst = dst[:tailAt]
	}
	n := 0
	switch v.qtype {
	case 1: // A
		for _, a := range r.spoof4 {
			dst = appendAddrRR(dst, 1, a[:])
			n++
		}
	case 28: // AAAA
		for _, a := range r.spoof6 {
			dst = appendAddrRR(dst, 28, a[:])
			n++
		}
	}
	dst = append(dst, opt...)
	binary.BigEndian.PutUint16(dst[start+2:], binary.BigEndian.Uint16(dst[start+2:])|flagAA)
	binary.BigEndian.PutUint16(dst[start+6:], uint16(n))
	return dst
}

func appendAddrRR(dst []byte, typ uint16, addr []byte) []byte {
	dst = append(dst, 0xC0, headerLen) // the name: a pointer to the question's
	dst = binary.BigEndian.AppendUint16(dst, typ)
	dst = binary.BigEndian.AppendUint16(dst, 1) // IN
	dst = binary.BigEndian.AppendUint32(dst, spoofTTL)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(addr)))
	return append(dst, addr...)
}
