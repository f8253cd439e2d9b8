package policy

// FNV-1a 64 parameters (FNV spec). FNV is chosen because it is tiny, has no
// key, so every node and every release hashes a name alike, which chashed needs
// for anycast nodes to agree on a name's backend; fmix64 then fixes FNV's weak
// avalanche in the high bits that the ring search depends on.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// HashName hashes a lowercased wire-format or presentation name (any []byte) deterministically (same value on every node and run, e.g. FNV-1a 64 or similar with good mixing), allocation-free.
//
// It folds ASCII A-Z to lowercase itself, so a qname with DNS 0x20
// randomised case hashes like its lowercase form even if a caller forgot to
// lowercase. That is safe on wire format too: length octets are at most 63,
// below 'A'. The two formats of one name hash differently; use one
// consistently. The value is part of the chashed contract: changing it would
// remap every name during a rolling upgrade, so a test pins it.
func HashName(name []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= fnvPrime
	}
	return fmix64(h)
}

// ringPoint is the position on the hash ring of backend name's k-th virtual
// node. It depends only on the name and k, so the ring is the same on every
// node and an existing backend's points do not move when another is added.
func ringPoint(name string, k uint32) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= fnvPrime
	}
	// A separator byte that cannot end a config name keeps ("ab", k) and
	// ("a", k') with a 'b' in k' from sharing a prefix.
	h ^= 0xff
	h *= fnvPrime
	for s := 0; s < 32; s += 8 {
		h ^= uint64(byte(k >> s))
		h *= fnvPrime
	}
	return fmix64(h)
}

// fmix64 is MurmurHash3's 64-bit finaliser: a bijection in which every input
// bit affects every output bit.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
