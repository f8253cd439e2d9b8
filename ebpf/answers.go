package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/anyfront/anyfront/ebpf/xdpanswer"
)

// AnswerKey identifies one answer as the XDP program looks it up. The
// type lives in the leaf package xdpanswer so that the proxy, which
// builds answers, need not link the loader and cilium/ebpf.
type AnswerKey = xdpanswer.AnswerKey

// Answer is one cached answer the XDP program may serve (see
// xdpanswer.Answer).
type Answer = xdpanswer.Answer

// Bounds of the answer cache, matching xdp.h (TestMapBoundsMatchGo checks).
const (
	// MaxAnswerSections bounds len(Answer.Sections): the program copies
	// and checksums no more (MAX_SECTIONS). Bigger answers are rare among
	// the hottest and stay with the proxy.
	MaxAnswerSections = xdpanswer.MaxAnswerSections
	// MaxAnswers bounds how many answers the map holds: 16 times the
	// default xdp_entries. The map allocates entries (about 850 bytes) as
	// they are inserted; the per-CPU hit counters take 512 KiB per CPU.
	MaxAnswers = 64 * 1024
	// MaxACLPrefixes bounds the ACL per address family (MAX_ACL): far
	// more than any acl a resolver front end names.
	MaxACLPrefixes = 16 * 1024
	maxNameLen     = 255
)

// Key flags, ANSWER_* in xdp.h.
const (
	answerEDNS = 1
	answerDO   = 2
	answerCD   = 4
)

// ErrAnswersFull is returned (wrapped) by SyncAnswers for answers beyond
// MaxAnswers.
var ErrAnswersFull = errors.New("xdp: answer map full")

// lowerWire lowercases the ASCII letters of a wire name, as the program
// does (label lengths, at most 63, are never letters).
func lowerWire(name string) []byte {
	b := []byte(name)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return b
}

// checkWireName checks that name is one uncompressed wire-format name of
// at most 255 bytes that ends with the root label and nothing after it.
func checkWireName(name []byte) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("name of %d bytes; at most %d", len(name), maxNameLen)
	}
	for i := 0; i < len(name); {
		l := int(name[i])
		switch {
		case l == 0 && i == len(name)-1:
			return nil
		case l == 0:
			return fmt.Errorf("%d bytes after the root label", len(name)-i-1)
		case l&0xc0 != 0:
			return fmt.Errorf("label type %#x at byte %d (compression pointers are not allowed)", l&0xc0, i)
		}
		i += 1 + l
	}
	return errors.New("name does not end with the root label")
}

// nameHash is the twin of the hash loop in answer.h: the lowercased wire
// name zero-padded to 256 bytes, as 8-byte words in the machine's byte
// order, mixed multiplicatively.
func nameHash(name []byte) uint64 {
	var padded [maxNameLen + 1]byte
	copy(padded[:], name)
	h := uint64(0x616e7966726f6e74) ^ uint64(len(name))
	for i := 0; i < len(padded); i += 8 {
		h = (h ^ binary.NativeEndian.Uint64(padded[i:])) * 0x9e3779b97f4a7c15
		h ^= h >> 31
	}
	return h
}

// sectionsSum is the folded one's-complement sum of b as big-endian
// words, an odd last byte padded with zero.
func sectionsSum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// encodeAnswer checks a against the program's bounds and builds its map
// key and value (slot 0: the map's writer assigns slots). The key it
// returns has the name lowercased.
func encodeAnswer(a Answer) (AnswerKey, xdpAnswerKey, *xdpAnswerVal, error) {
	name := lowerWire(a.Key.Name)
	if err := checkWireName(name); err != nil {
		return AnswerKey{}, xdpAnswerKey{}, nil, fmt.Errorf("xdp: answer %v: %w", a.Key, err)
	}
	if len(a.Sections) > MaxAnswerSections {
		return AnswerKey{}, xdpAnswerKey{}, nil, fmt.Errorf("xdp: answer %v: sections of %d bytes; at most %d",
			a.Key, len(a.Sections), MaxAnswerSections)
	}
	key := a.Key
	key.Name = string(name)
	var k xdpAnswerKey
	k.Hash = nameHash(name)
	binary.BigEndian.PutUint16(k.Qtype[:], key.Type)
	binary.BigEndian.PutUint16(k.Qclass[:], key.Class)
	if key.EDNS {
		k.Flags |= answerEDNS
	}
	if key.DO {
		k.Flags |= answerDO
	}
	if key.CD {
		k.Flags |= answerCD
	}
	v := new(xdpAnswerVal)
	v.D.Key = k
	if a.Expires > 0 {
		v.D.Expires = uint64(a.Expires)
	}
	v.D.NameLen = uint16(len(name))
	v.D.SectionsLen = uint16(len(a.Sections))
	binary.BigEndian.PutUint16(v.D.Flags[:], a.Flags)
	for i, c := range a.Counts {
		binary.BigEndian.PutUint16(v.D.Counts[2*i:], c)
	}
	binary.BigEndian.PutUint16(v.D.SectionsSum[:], sectionsSum(a.Sections))
	copy(v.D.Name[:], name)
	copy(v.D.Sections[:], a.Sections)
	return key, k, v, nil
}

// answerSet is a desired content of the answer map, encoded.
type answerSet map[AnswerKey]*xdpAnswerVal

// buildAnswers encodes answers; those that break a bound are left out and
// reported, each by name. A key given twice keeps its last answer.
func buildAnswers(answers []Answer) (answerSet, error) {
	set := make(answerSet, len(answers))
	var errs []error
	for _, a := range answers {
		key, _, v, err := encodeAnswer(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, ok := set[key]; !ok && len(set) >= MaxAnswers {
			errs = append(errs, fmt.Errorf("answer %v: %w (%d answers)", a.Key, ErrAnswersFull, MaxAnswers))
			continue
		}
		set[key] = v
	}
	return set, errors.Join(errs...)
}

// aclSet is a desired ACL, canonical prefixes.
type aclSet map[netip.Prefix]bool

// buildACL canonicalises and bounds an ACL.
func buildACL(prefixes []netip.Prefix) (aclSet, error) {
	set := make(aclSet, len(prefixes))
	var n4, n6 int
	for _, p := range prefixes {
		c, err := canonical(p)
		if err != nil {
			return nil, fmt.Errorf("xdp: acl: %w", err)
		}
		if set[c] {
			continue
		}
		set[c] = true
		if c.Addr().Is4() {
			n4++
		} else {
			n6++
		}
	}
	if n4 > MaxACLPrefixes || n6 > MaxACLPrefixes {
		return nil, fmt.Errorf("xdp: acl of %d IPv4 and %d IPv6 prefixes; at most %d per family", n4, n6, MaxACLPrefixes)
	}
	return set, nil
}

// SyncAnswers makes the answer map hold exactly these answers (insert or
// update these, delete every other). Safe from any goroutine; when the
// program is not loaded (before Run, or between runs) it remembers the set
// and Run applies it on load. Answers that break a bound (name, sections
// size) are an error naming the answer; the rest still apply.
func (d *Dataplane) SyncAnswers(answers []Answer) error {
	set, err := buildAnswers(answers)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.answers = set
	if d.objs != nil {
		n, werr := d.objs.syncAnswers(set)
		d.publishes += uint64(n)
		err = errors.Join(err, werr)
	}
	return err
}

// AnswerHits returns, for each answer in the map, how many queries XDP
// answered with it since it was inserted (an update keeps counting). It is
// empty while the program is not loaded.
func (d *Dataplane) AnswerHits() (map[AnswerKey]uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.objs == nil {
		return map[AnswerKey]uint64{}, nil
	}
	return d.objs.answerHits()
}

// SetACL sets the client prefixes XDP may answer from the cache (the
// proxy's acl); queries from other sources always pass to the proxy. An
// empty list answers nobody. An ACL over MaxACLPrefixes per family is
// refused and the previous one stays.
func (d *Dataplane) SetACL(prefixes []netip.Prefix) error {
	set, err := buildACL(prefixes)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.acl = set
	if d.objs != nil {
		return d.objs.syncACL(set)
	}
	return nil
}
