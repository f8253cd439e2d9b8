package rules

import (
	"cmp"
	"slices"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/policy"
)

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
		w := WireName(n)
		es = append(es, entry{policy.HashName(w), w})
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.h, b.h) })
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

// WireName turns a lowercase presentation name ("example.com.") into wire
// format. Config validation has already checked the labels.
func WireName(name string) []byte {
	// miekg/dns packs escapes (\. and \DDD) the way a resolver reads them;
	// lowercase after packing, so an escaped byte is folded like any other.
	buf := make([]byte, dnswire.MaxNameLen+1)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		return []byte{0} // config validation has already refused it
	}
	w := buf[:n]
	for i := 0; i < len(w) && w[i] != 0; i += int(w[i]) + 1 {
		for j := i + 1; j <= i+int(w[i]) && j < len(w); j++ {
			if 'A' <= w[j] && w[j] <= 'Z' {
				w[j] += 'a' - 'A'
			}
		}
	}
	return w
}
