package pcache

import (
	"encoding/binary"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/policy"
)

// Key is the part of a query that decides its answer, flattened: the
// lowercased name, type, class, a flags byte (EDNS, DO, CD) and the EDNS
// version. Where ECS is in use the key goes on with the client's subnet
// (ecs.go). A Key is filled in place for every query (no allocation); the
// core keeps one in each parsed view.
type Key struct {
	buf [dnswire.MaxNameLen + 8 + dnswire.ECSMaxData + 1]byte
	n   int
	h   uint64
	// base and hb are the key without its ECS part: where answers valid
	// for every subnet live. shared says to look there after a miss.
	base   int
	hb     uint64
	shared bool
	// skip keeps the query out of the cache (a malformed ECS).
	skip bool
}

// Key flag bits, in the byte after type and class.
const (
	keyEDNS = 1
	keyDO   = 2
	keyCD   = 4
)

// Set fills k from the query parsed into v, its ECS plan included.
func (k *Key) Set(v *dnswire.View) {
	n := copy(k.buf[:], v.Name())
	binary.BigEndian.PutUint16(k.buf[n:], v.QType)
	binary.BigEndian.PutUint16(k.buf[n+2:], v.QClass)
	var flags byte
	if v.HasOPT {
		flags |= keyEDNS
		k.buf[n+5] = byte(v.EDNSTTL >> 16) // EDNS version
	} else {
		k.buf[n+5] = 0
	}
	if v.DO() {
		flags |= keyDO
	}
	if v.Flags&dnswire.FlagCD != 0 {
		flags |= keyCD
	}
	k.buf[n+4] = flags
	k.n = n + 6
	k.base = k.n
	k.AppendECS(&v.ECS)
	if v.Bypass() {
		k.skip = true // its answer is the backend's to give (clientopts.go)
	}
	k.h = policy.HashName(k.buf[:k.n])
	k.hb = k.h
	if k.base != k.n {
		k.hb = policy.HashName(k.buf[:k.base])
	}
}

// SetQuestion fills k with the key of a query for name (lowercase wire
// format), qtype and qclass with EDNS version 0 when edns is set, and no
// client subnet: what the XDP answer cache keys its answers by. It reports
// false for a name too long to be one.
func (k *Key) SetQuestion(name string, qtype, qclass uint16, edns, do, cd bool) bool {
	n := len(name)
	if n == 0 || n > dnswire.MaxNameLen {
		return false
	}
	copy(k.buf[:], name)
	binary.BigEndian.PutUint16(k.buf[n:], qtype)
	binary.BigEndian.PutUint16(k.buf[n+2:], qclass)
	var flags byte
	if edns {
		flags |= keyEDNS
	}
	if do {
		flags |= keyDO
	}
	if cd {
		flags |= keyCD
	}
	k.buf[n+4] = flags
	k.buf[n+5] = 0
	k.n = n + 6
	k.base = k.n
	k.shared, k.skip = false, false
	k.h = policy.HashName(k.buf[:k.n])
	k.hb = k.h
	return true
}

// Bytes is the key as stored; it is k's own buffer, valid until k changes.
func (k *Key) Bytes() []byte { return k.buf[:k.n] }

// Skip says the query stays out of the cache (its answer is the backend's
// to give, or its ECS is malformed).
func (k *Key) Skip() bool { return k.skip }

// Question is what a key without a client subnet says.
type Question struct {
	Name         []byte // lowercase wire format
	Type, Class  uint16
	EDNS, DO, CD bool
	Version      uint8 // EDNS version
}

// ParseKey splits a stored key into its question. It reports false for a
// key that goes on past name, type, class, flags and EDNS version: one that
// carries a client subnet (ecs.go), whose answer is not everyone's.
func ParseKey(key []byte) (Question, bool) {
	n, ok := keyNameLen(key)
	if !ok || len(key) != n+6 {
		return Question{}, false
	}
	flags := key[n+4]
	return Question{
		Name:    key[:n],
		Type:    binary.BigEndian.Uint16(key[n:]),
		Class:   binary.BigEndian.Uint16(key[n+2:]),
		EDNS:    flags&keyEDNS != 0,
		DO:      flags&keyDO != 0,
		CD:      flags&keyCD != 0,
		Version: key[n+5],
	}, true
}

// keyNameLen returns the length of the wire name a cache key starts with.
func keyNameLen(key []byte) (int, bool) {
	for i := 0; i < len(key) && i < dnswire.MaxNameLen; i += int(key[i]) + 1 {
		if key[i] == 0 {
			return i + 1, true
		}
	}
	return 0, false
}
