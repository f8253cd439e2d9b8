package dnswire

import (
	"encoding/binary"
	"net/netip"
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
// Cache (pcache.Key): an owned query's key carries the source
// prefix sent (family, length, address bits). An answer whose returned
// SCOPE is 0, or that has no ECS at all, holds for every subnet and is
// stored under the key without that part, which every query of the pool
// tries after its own subnet's; an answer with a SCOPE up to the source
// length is stored under the subnet's key (a shorter SCOPE could be shared
// more widely, but one key per query keeps lookups at two); a SCOPE longer
// than the source is not cached. A client's own ECS that is passed through is
// keyed by its exact bytes and never shared, since the answer echoes it.

const (
	OptionECS = 8
	// ECSMaxData is the longest ECS option data: family, source and scope
	// lengths, and 16 address bytes.
	ECSMaxData = 4 + 16
	// ECSMaxGrowth is the most an ECS edit adds to a query: an OPT record
	// (11 bytes) holding one option (4 + ecsMaxData).
	ECSMaxGrowth = 11 + 4 + ECSMaxData
	// ecsAddedPayload is the UDP size advertised in an OPT record anyfront
	// adds: the client sent no EDNS, so 512 bytes is all it takes, and a
	// backend told so truncates the answer itself.
	ecsAddedPayload = 512
)

// ECSPolicy is a pool's ECS settings.
type ECSPolicy struct {
	Add, Override bool
	V4, V6        uint8 // source prefix lengths
}

// ECSMode is what anyfront does to a query's ECS, and so to its answer.
type ECSMode uint8

const (
	ECSNone      ECSMode = iota // forwarded as the client sent it
	ECSAddOPT                   // no OPT: one added with our ECS, removed from the answer
	ECSAddOption                // OPT without ECS: ours added, removed from the answer
	ECSReplace                  // the client's ECS replaced by ours, removed from the answer
)

// ECSClient is what the client's own ECS means for the cache.
type ECSClient uint8

const (
	ECSClientNone ECSClient = iota // none sent, or replaced
	ECSClientKept                  // passed through: the answer echoes it
	ECSClientBad                   // malformed OPT or ECS: passed through, never cached
)

// ECSPlan is one query's ECS decision, filled by planECS.
type ECSPlan struct {
	Mode   ECSMode
	Client ECSClient
	// cStart and cEnd delimit the client's ECS option (code to end of
	// data) in the query, when it sent one; optEnd is the OPT record's end.
	cStart, cEnd, optEnd int
	// Data is the option Data that goes into the key: ours (mode !=
	// ecsNone) or the client's (ecsClientKept).
	Data [ECSMaxData]byte
	DLen uint8
}

// Source is the Source prefix length of the option in data.
func (p *ECSPlan) Source() int { return int(p.Data[2]) }

// PlanECS decides what pol does with the ECS of the query in msg (parsed
// into v) from client, and records it in v.ecs.
func (v *View) PlanECS(pol *ECSPolicy, msg []byte, client netip.Addr) {
	p := &v.ECS
	p.Mode, p.Client, p.cStart, p.cEnd, p.DLen = ECSNone, ECSClientNone, 0, 0, 0
	if v.Malformed {
		// Forwarded untouched for the backend to refuse, never cached.
		p.Client = ECSClientBad
		return
	}
	has := false
	if v.HasOPT {
		s, e, optEnd, ok := FindECSOption(msg, v.OPTOff)
		if !ok {
			// The backend answers a broken OPT (FORMERR) as it would
			// directly; that answer is nobody else's to share.
			p.Client = ECSClientBad
			return
		}
		p.optEnd = optEnd
		if e > s {
			has, p.cStart, p.cEnd = true, s, e
		}
	}
	switch {
	case has && !pol.Override:
		data := msg[p.cStart+4 : p.cEnd]
		if len(data) < 4 || len(data) > ECSMaxData {
			p.Client = ECSClientBad
			return
		}
		p.Client = ECSClientKept
		p.DLen = uint8(copy(p.Data[:], data))
		return
	case has:
		p.Mode = ECSReplace
	case !pol.Add:
		return
	case v.HasOPT:
		p.Mode = ECSAddOption
	case !wholeRecords(msg, v):
		// An OPT appended behind damaged records or trailing bytes would
		// not be found; the query goes on as the client sent it.
		return
	default:
		p.Mode = ECSAddOPT
	}
	if len(msg)+ECSMaxGrowth > MaxMessage {
		// No room to edit a query this close to 64 KiB (TCP only):
		// forward it as sent, and keep its answer out of the cache.
		if p.Mode == ECSReplace {
			p.Client = ECSClientBad
		}
		p.Mode = ECSNone
		return
	}
	client = client.Unmap()
	if !client.IsValid() {
		// No address to give: forward as sent, but a replaced ECS is
		// still not the client's to choose.
		if p.Mode != ECSReplace {
			p.Mode = ECSNone
			return
		}
		client = netip.IPv4Unspecified()
	}
	family, bits := uint16(1), pol.V4
	if client.Is6() {
		family, bits = 2, pol.V6
	}
	binary.BigEndian.PutUint16(p.Data[0:], family)
	p.Data[2], p.Data[3] = bits, 0
	a := client.AsSlice()
	n := (int(bits) + 7) / 8
	copy(p.Data[4:], a[:n])
	if r := bits % 8; r != 0 {
		p.Data[4+n-1] &= 0xFF << (8 - r) // bits past the prefix must be zero
	}
	p.DLen = uint8(4 + n)
}

// wholeRecords reports whether the records after the question, none of
// them an OPT (the caller found no valid one), end exactly at the end of
// msg. Queries carry none, so this is one comparison.
func wholeRecords(msg []byte, v *View) bool {
	off := v.QEnd
	for i := 0; i < int(v.ANCount)+int(v.NSCount)+int(v.ARCount); i++ {
		var typ uint16
		var ok bool
		if off, typ, ok = SkipRecord(msg, off); !ok || typ == TypeOPT {
			return false
		}
	}
	return off == len(msg)
}

// FindECSOption walks the options of the OPT record at optOff (which
// findOPTAfter already checked lies inside msg). It returns the ECS
// option's bounds (equal when there is none) and the record's end; ok is
// false when an option runs past the record or ECS appears twice.
func FindECSOption(msg []byte, optOff int) (start, end, optEnd int, ok bool) {
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
		if code == OptionECS {
			if end > start {
				return 0, 0, 0, false
			}
			start, end = off, next
		}
		off = next
	}
	return start, end, optEnd, true
}

// AppendForward appends the query in msg (parsed into v, planned with
// planECS) as it goes to a backend: with the plan's ECS edit, the ID left
// as the client's. It allocates only when dst lacks len(msg)+ecsMaxGrowth
// bytes of room.
func AppendForward(dst, msg []byte, v *View) []byte {
	p := &v.ECS
	start := len(dst)
	switch p.Mode {
	case ECSAddOPT:
		dst = append(dst, msg...)
		ar := binary.BigEndian.Uint16(dst[start+10:])
		binary.BigEndian.PutUint16(dst[start+10:], ar+1)
		dst = append(dst, 0, 0, TypeOPT, ecsAddedPayload>>8, ecsAddedPayload&0xFF, 0, 0, 0, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(4+p.DLen))
		return appendECSOption(dst, p.Data[:p.DLen])
	case ECSAddOption, ECSReplace:
		if p.Mode == ECSReplace {
			dst = append(dst, msg[:p.cStart]...)
			dst = append(dst, msg[p.cEnd:p.optEnd]...)
		} else {
			dst = append(dst, msg[:p.optEnd]...)
		}
		dst = appendECSOption(dst, p.Data[:p.DLen])
		rdata := start + v.OPTOff + 11
		binary.BigEndian.PutUint16(dst[rdata-2:], uint16(len(dst)-rdata))
		return append(dst, msg[p.optEnd:]...)
	}
	return append(dst, msg...)
}

func appendECSOption(dst, data []byte) []byte {
	dst = append(dst, 0, OptionECS)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	return append(dst, data...)
}

// StripECS cuts a backend's answer (parsed by matchResponse into v) back to
// what a client whose query went out under mode expects: without the OPT
// record anyfront added, or without the ECS option it added. It edits resp
// in place (v.arcount follows) and returns the new length and the answer's
// ECS SCOPE: -1 when the answer carries no ECS. ok is false when the
// answer's OPT cannot be read; the answer then goes on as it is, uncached.
func StripECS(resp []byte, v *View, mode ECSMode) (n, scope int, ok bool) {
	n, scope = len(resp), -1
	if mode == ECSNone {
		return n, scope, true
	}
	optStart, optEnd := 0, 0
	off := v.QEnd
	records := int(v.ANCount) + int(v.NSCount)
	for i := 0; i < records+int(v.ARCount); i++ {
		start := off
		var typ uint16
		if off, typ, ok = SkipRecord(resp, off); !ok {
			return n, scope, false
		}
		if i >= records && typ == TypeOPT && resp[start] == 0 {
			optStart, optEnd = start, off
			break
		}
	}
	if optEnd == 0 {
		return n, scope, true // a backend without EDNS: nothing to take back
	}
	s, e, _, optOK := FindECSOption(resp, optStart)
	if optOK && e-s >= 4+4 {
		scope = int(resp[s+4+3])
	}
	if mode == ECSAddOPT {
		copy(resp[optStart:], resp[optEnd:])
		v.ARCount--
		binary.BigEndian.PutUint16(resp[10:], v.ARCount)
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
