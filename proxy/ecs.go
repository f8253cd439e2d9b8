package proxy

import (
	"encoding/binary"
	"net/netip"

	"github.com/anyfront/anyfront/config"
)

// EDNS Client Subnet (RFC 7871), edited on the wire like everything else on
// the hot path: the query is copied once into the buffer it is sent from,
// with the option added (and an OPT record when the query had none), and the
// answer is cut back in place to what the client asked for.
//
// When anyfront puts its own ECS in a query it owns that option: the answer's
// ECS is removed again (and the OPT record, when anyfront added it), because
// a client that sent no ECS must get none back (RFC 7871 section 7.2.1) and
// one whose ECS was overridden is treated as talking to a server that does
// not do ECS, which is what override means. An ECS the client sent and the
// pool keeps is passed through both ways untouched.
//
// Cache (cache.go's cacheKey): an owned query's key carries the source
// prefix sent (family, length, address bits). An answer whose returned
// SCOPE is 0, or that has no ECS at all, holds for every subnet and is
// stored under the key without that part, which every query of the pool
// tries after its own subnet's; an answer with a SCOPE up to the source
// length is stored under the subnet's key (a shorter SCOPE could be shared
// more widely, but one key per query keeps lookups at two); a SCOPE longer
// than the source is not cached. A client's own ECS that is passed through is
// keyed by its exact bytes and never shared, since the answer echoes it.

const (
	optionECS = 8
	// ecsMaxData is the longest ECS option data: family, source and scope
	// lengths, and 16 address bytes.
	ecsMaxData = 4 + 16
	// ecsMaxGrowth is the most an ECS edit adds to a query: an OPT record
	// (11 bytes) holding one option (4 + ecsMaxData).
	ecsMaxGrowth = 11 + 4 + ecsMaxData
	// ecsAddedPayload is the UDP size advertised in an OPT record anyfront
	// adds: the client sent no EDNS, so 512 bytes is all it takes, and a
	// backend told so truncates the answer itself.
	ecsAddedPayload = 512
)

// ecsPolicy is a pool's ECS settings.
type ecsPolicy struct {
	add, override bool
	v4, v6        uint8 // source prefix lengths
}

func newECSPolicy(c config.ECS) ecsPolicy {
	return ecsPolicy{add: c.Add, override: c.Override, v4: uint8(c.V4Prefix), v6: uint8(c.V6Prefix)}
}

// ecsMode is what anyfront does to a query's ECS, and so to its answer.
type ecsMode uint8

const (
	ecsNone      ecsMode = iota // forwarded as the client sent it
	ecsAddOPT                   // no OPT: one added with our ECS, removed from the answer
	ecsAddOption                // OPT without ECS: ours added, removed from the answer
	ecsReplace                  // the client's ECS replaced by ours, removed from the answer
)

// ecsClient is what the client's own ECS means for the cache.
type ecsClient uint8

const (
	ecsClientNone ecsClient = iota // none sent, or replaced
	ecsClientKept                  // passed through: the answer echoes it
	ecsClientBad                   // malformed OPT or ECS: passed through, never cached
)

// ecsPlan is one query's ECS decision, filled by planECS.
type ecsPlan struct {
	mode   ecsMode
	client ecsClient
	// cStart and cEnd delimit the client's ECS option (code to end of
	// data) in the query, when it sent one; optEnd is the OPT record's end.
	cStart, cEnd, optEnd int
	// data is the option data that goes into the key: ours (mode !=
	// ecsNone) or the client's (ecsClientKept).
	data [ecsMaxData]byte
	dlen uint8
}

// source is the source prefix length of the option in data.
func (p *ecsPlan) source() int { return int(p.data[2]) }

// planECS decides what pol does with the ECS of the query in msg (parsed
// into v) from client, and records it in v.ecs.
func (v *msgView) planECS(pol *ecsPolicy, msg []byte, client netip.Addr) {
	p := &v.ecs
	p.mode, p.client, p.cStart, p.cEnd, p.dlen = ecsNone, ecsClientNone, 0, 0, 0
	if v.malformed {
		// Forwarded untouched for the backend to refuse, never cached.
		p.client = ecsClientBad
		return
	}
	has := false
	if v.hasOPT {
		s, e, optEnd, ok := findECSOption(msg, v.optOff)
		if !ok {
			// The backend answers a broken OPT (FORMERR) as it would
			// directly; that answer is nobody else's to share.
			p.client = ecsClientBad
			return
		}
		p.optEnd = optEnd
		if e > s {
			has, p.cStart, p.cEnd = true, s, e
		}
	}
	switch {
	case has && !pol.override:
		data := msg[p.cStart+4 : p.cEnd]
		if len(data) < 4 || len(data) > ecsMaxData {
			p.client = ecsClientBad
			return
		}
		p.client = ecsClientKept
		p.dlen = uint8(copy(p.data[:], data))
		return
	case has:
		p.mode = ecsReplace
	case !pol.add:
		return
	case v.hasOPT:
		p.mode = ecsAddOption
	case !wholeRecords(msg, v):
		// An OPT appended behind damaged records or trailing bytes would
		// not be found; the query goes on as the client sent it.
		return
	default:
		p.mode = ecsAddOPT
	}
	if len(msg)+ecsMaxGrowth > maxAnswerSize {
		// No room to edit a query this close to 64 KiB (TCP only):
		// forward it as sent, and keep its answer out of the cache.
		if p.mode == ecsReplace {
			p.client = ecsClientBad
		}
		p.mode = ecsNone
		return
	}
	client = client.Unmap()
	if !client.IsValid() {
		// No address to give: forward as sent, but a replaced ECS is
		// still not the client's to choose.
		if p.mode != ecsReplace {
			p.mode = ecsNone
			return
		}
		client = netip.IPv4Unspecified()
	}
	family, bits := uint16(1), pol.v4
	if client.Is6() {
		family, bits = 2, pol.v6
	}
	binary.BigEndian.PutUint16(p.data[0:], family)
	p.data[2], p.data[3] = bits, 0
	a := client.AsSlice()
	n := (int(bits) + 7) / 8
	copy(p.data[4:], a[:n])
	if r := bits % 8; r != 0 {
		p.data[4+n-1] &= 0xFF << (8 - r) // bits past the prefix must be zero
	}
	p.dlen = uint8(4 + n)
}

// wholeRecords reports whether the records after the question, none of
// them an OPT (the caller found no valid one), end exactly at the end of
// msg. Queries carry none, so this is one comparison.
func wholeRecords(msg []byte, v *msgView) bool {
	off := v.qEnd
	for i := 0; i < int(v.ancount)+int(v.nscount)+int(v.arcount); i++ {
		var typ uint16
		var ok bool
		if off, typ, ok = skipRecord(msg, off); !ok || typ == typeOPT {
			return false
		}
	}
	return off == len(msg)
}

// findECSOption walks the options of the OPT record at optOff (which
// findOPTAfter already checked lies inside msg). It returns the ECS
// option's bounds (equal when there is none) and the record's end; ok is
// false when an option runs past the record or ECS appears twice.
func findECSOption(msg []byte, optOff int) (start, end, optEnd int, ok bool) {
	if optOff+11 > len(msg) {
		return 0, 0, 0, false
	}
	off := optOff + 11
	optEnd = off + int(binary.BigEndian.Uint16(msg[optOff+9:]))
	if optEnd > len(msg) {
		return 0, 0, 0, false
	}
	for off < optEnd {
		if off+4 > optEnd {
			return 0, 0, 0, false
		}
		code := binary.BigEndian.Uint16(msg[off:])
		next := off + 4 + int(binary.BigEndian.Uint16(msg[off+2:]))
		if next > optEnd {
			return 0, 0, 0, false
		}
		if code == optionECS {
			if end > start {
				return 0, 0, 0, false
			}
			start, end = off, next
		}
		off = next
	}
	return start, end, optEnd, true
}

// appendForward appends the query in msg (parsed into v, planned with
// planECS) as it goes to a backend: with the plan's ECS edit, the ID left
// as the client's. It allocates only when dst lacks len(msg)+ecsMaxGrowth
// bytes of room.
func appendForward(dst, msg []byte, v *msgView) []byte {
	p := &v.ecs
	start := len(dst)
	switch p.mode {
	case ecsAddOPT:
		dst = append(dst, msg...)
		ar := binary.BigEndian.Uint16(dst[start+10:])
		binary.BigEndian.PutUint16(dst[start+10:], ar+1)
		dst = append(dst, 0, 0, typeOPT, ecsAddedPayload>>8, ecsAddedPayload&0xFF, 0, 0, 0, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(4+p.dlen))
		return appendECSOption(dst, p.data[:p.dlen])
	case ecsAddOption, ecsReplace:
		if p.mode == ecsReplace {
			dst = append(dst, msg[:p.cStart]...)
			dst = append(dst, msg[p.cEnd:p.optEnd]...)
		} else {
			dst = append(dst, msg[:p.optEnd]...)
		}
		dst = appendECSOption(dst, p.data[:p.dlen])
		rdata := start + v.optOff + 11
		binary.BigEndian.PutUint16(dst[rdata-2:], uint16(len(dst)-rdata))
		return append(dst, msg[p.optEnd:]...)
	}
	return append(dst, msg...)
}

func appendECSOption(dst, data []byte) []byte {
	dst = append(dst, 0, optionECS)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	return append(dst, data...)
}

// stripECS cuts a backend's answer (parsed by matchResponse into v) back to
// what a client whose query went out under mode expects: without the OPT
// record anyfront added, or without the ECS option it added. It edits resp
// in place (v.arcount follows) and returns the new length and the answer's
// ECS SCOPE: -1 when the answer carries no ECS. ok is false when the
// answer's OPT cannot be read; the answer then goes on as it is, uncached.
func stripECS(resp []byte, v *msgView, mode ecsMode) (n, scope int, ok bool) {
	n, scope = len(resp), -1
	if mode == ecsNone {
		return n, scope, true
	}
	optStart, optEnd := 0, 0
	off := v.qEnd
	records := int(v.ancount) + int(v.nscount)
	for i := 0; i < records+int(v.arcount); i++ {
		start := off
		var typ uint16
		if off, typ, ok = skipRecord(resp, off); !ok {
			return n, scope, false
		}
		if i >= records && typ == typeOPT && resp[start] == 0 {
			optStart, optEnd = start, off
			break
		}
	}
	if optEnd == 0 {
		return n, scope, true // a backend without EDNS: nothing to take back
	}
	s, e, _, optOK := findECSOption(resp, optStart)
	if optOK && e-s >= 4+4 {
		scope = int(resp[s+4+3])
	}
	if mode == ecsAddOPT {
		copy(resp[optStart:], resp[optEnd:])
		v.arcount--
		binary.BigEndian.PutUint16(resp[10:], v.arcount)
		return n - (optEnd - optStart), scope, optOK
	}
	if !optOK {
		return n, -1, false
	}
	if e > s {
		copy(resp[s:], resp[e:])
		rdlen := binary.BigEndian.Uint16(resp[optStart+9:])
		binary.BigEndian.PutUint16(resp[optStart+9:], rdlen-uint16(e-s))
		n -= e - s
	}
	return n, scope, true
}

// appendECS adds the plan's ECS part to a cache key (see the top of this
// file). The part ends in a tag byte that is never zero, so the key's last
// byte is no EDNS version and XDP's answer cache leaves such entries alone.
func (k *cacheKey) appendECS(p *ecsPlan) {
	k.skip, k.shared = false, false
	var tag byte
	switch {
	case p.client == ecsClientBad:
		k.skip = true
		return
	case p.mode != ecsNone:
		tag, k.shared = 'S', true
	case p.client == ecsClientKept:
		tag = 'C'
	default:
		return
	}
	k.n += copy(k.buf[k.n:], p.data[:p.dlen])
	k.buf[k.n] = tag
	k.n++
}

// scoped points k, the key of an owned-ECS query whose source prefix was
// source bits, at where its answer may be stored, given the answer's SCOPE
// (stripECS's scope and ok).
func (k *cacheKey) scoped(source, scope int, ok bool) {
	switch {
	case !ok || scope > source:
		k.skip = true
	case scope <= 0:
		k.n, k.h, k.shared = k.base, k.hb, false
	}
}
