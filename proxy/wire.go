package proxy

import (
	"encoding/binary"
	"errors"
)

// The hot path never unpacks a whole message: it reads the 12-byte header, the
// question and, when present, the OPT record, straight from the wire bytes.

const (
	headerLen = 12
	// maxNameLen is RFC 1035's limit on a name's wire length.
	maxNameLen = 255

	flagQR = 1 << 15
	flagAA = 1 << 10
	flagTC = 1 << 9
	flagRD = 1 << 8
	flagRA = 1 << 7
	flagCD = 1 << 4

	typeOPT  = 41
	typeSIG  = 24  // SIG(0), RFC 2931
	typeTSIG = 250 // RFC 8945

	rcodeNoError  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5

	// ednsPayload is what anyfront advertises in answers it makes itself
	// (DNS flag day 2020).
	ednsPayload = 1232
)

// Parse errors. Each is counted by kind and the packet is dropped, except
// where the caller answers FORMERR or NOTIMP.
var (
	errShort        = errors.New("shorter than a DNS header")
	errNotQuery     = errors.New("QR set in a query")
	errQDCount      = errors.New("QDCOUNT is not 1")
	errOpcode       = errors.New("opcode is not QUERY")
	errBadName      = errors.New("malformed question name")
	errTruncatedMsg = errors.New("message ends inside a record")
	errBadResponse  = errors.New("response does not match the query")
)

// msgView is the parsed view of a DNS message: offsets into the wire bytes and
// the few fields the proxy routes on. It is filled in place and holds no
// pointers, so a zero-allocation path can keep one per worker.
type msgView struct {
	id      uint16
	flags   uint16
	qdcount uint16
	ancount uint16
	nscount uint16
	arcount uint16
	// qEnd is the offset just past the question (QTYPE and QCLASS included);
	// the question's wire bytes are msg[headerLen:qEnd].
	qEnd   int
	qtype  uint16
	qclass uint16
	// lower is the question name in lowercase wire format; lowerLen its length.
	lower    [maxNameLen]byte
	lowerLen int
	// hasOPT is set when the additional section carries an OPT record.
	hasOPT  bool
	udpSize uint16 // OPT CLASS: the sender's UDP payload size
	ednsTTL uint32 // OPT TTL: extended rcode, version, DO and Z flags
	// optOff is where the OPT record starts, when hasOPT.
	optOff int
	// signed says the query carries a TSIG or SIG(0) record; malformed,
	// that its records are ones a server refuses (records in the answer
	// or authority section, a second OPT or one not owned by the root,
	// damaged records, TC set). Either keeps the query away from the cache: its
	// answer is the backend's to give (RFC 8906: behave as the backend).
	signed, malformed bool
	// opts are the query's per-client EDNS options (cacheopts.go).
	opts clientOpts
	// ecs is what the query's pool does with EDNS Client Subnet (ecs.go).
	ecs ecsPlan
	// key is the packet cache key, filled only when a cache is consulted.
	key cacheKey
}

func (v *msgView) opcode() int  { return int(v.flags>>11) & 0xF }
func (v *msgView) rcode() int   { return int(v.flags & 0xF) }
func (v *msgView) do() bool     { return v.hasOPT && v.ednsTTL&0x8000 != 0 }
func (v *msgView) name() []byte { return v.lower[:v.lowerLen] }

// maxUDPResponse is the largest UDP answer the client said it can take.
func (v *msgView) maxUDPResponse() int {
	if !v.hasOPT || v.udpSize < 512 {
		return 512
	}
	return int(v.udpSize)
}

// parseHeader reads the fixed header.
func (v *msgView) parseHeader(msg []byte) error {
	if len(msg) < headerLen {
		return errShort
	}
	v.id = binary.BigEndian.Uint16(msg[0:])
	v.flags = binary.BigEndian.Uint16(msg[2:])
	v.qdcount = binary.BigEndian.Uint16(msg[4:])
	v.ancount = binary.BigEndian.Uint16(msg[6:])
	v.nscount = binary.BigEndian.Uint16(msg[8:])
	v.arcount = binary.BigEndian.Uint16(msg[10:])
	v.qEnd = headerLen
	v.lowerLen = 0
	v.hasOPT = false
	v.signed, v.malformed = false, false
	v.opts = clientOpts{}
	v.udpSize = 0
	v.ednsTTL = 0
	v.ecs.mode, v.ecs.client = ecsNone, ecsClientNone
	return nil
}

// parseQuery validates a query as every front end must (DESIGN.md): a short
// packet or QR set is errShort/errNotQuery (drop); TC set is forwarded
// uncached (malformed); an opcode other than QUERY is errOpcode (NOTIMP),
// judged before QDCOUNT as RFC 8906 §3.1.4 has it, and reported once the
// question (if one) parsed so the NOTIMP can echo it; QDCOUNT != 1 is
// errQDCount (FORMERR); a bad name is errBadName (drop).
func (v *msgView) parseQuery(msg []byte) error {
	if err := v.parseHeader(msg); err != nil {
		return err
	}
	if v.flags&flagQR != 0 {
		return errNotQuery
	}
	if v.qdcount != 1 {
		v.findOPTAfter(msg, headerLen, 0)
		if v.opcode() != 0 {
			return errOpcode
		}
		return errQDCount
	}
	if err := v.parseQuestion(msg); err != nil {
		return err
	}
	// The rest is only read to find the OPT record; a query whose later
	// records are damaged is still forwarded as the client sent it, so the
	// backend answers it exactly as it would directly.
	v.findOPTAfter(msg, v.qEnd, int(v.ancount)+int(v.nscount))
	if v.flags&flagTC != 0 {
		// Backends differ (unbound: FORMERR, BIND: an answer): the
		// backend answers it, never the cache.
		v.malformed = true
	}
	if v.opcode() != 0 {
		return errOpcode
	}
	return nil
}

// parseQuestion reads the single question. Compression pointers are refused:
// no legitimate client compresses the only name in a query, and refusing them
// rules out pointer loops.
func (v *msgView) parseQuestion(msg []byte) error {
	off := headerLen
	n := 0
	for {
		if off >= len(msg) {
			return errBadName
		}
		l := int(msg[off])
		if l == 0 {
			v.lower[n] = 0
			n++
			off++
			break
		}
		if l > 63 { // 0xC0 pointers and the reserved 0x40/0x80 label types
			return errBadName
		}
		if n+1+l+1 > maxNameLen || off+1+l > len(msg) {
			return errBadName
		}
		v.lower[n] = byte(l)
		for i := 1; i <= l; i++ {
			c := msg[off+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			v.lower[n+i] = c
		}
		n += 1 + l
		off += 1 + l
	}
	if off+4 > len(msg) {
		return errBadName
	}
	v.lowerLen = n
	v.qtype = binary.BigEndian.Uint16(msg[off:])
	v.qclass = binary.BigEndian.Uint16(msg[off+2:])
	v.qEnd = off + 4
	return nil
}

// findOPTAfter skips skip records starting at off, then scans the additional
// section for the OPT record, noting what makes the query signed or
// malformed. It never fails: a damaged tail leaves hasOPT unset.
func (v *msgView) findOPTAfter(msg []byte, off, skip int) {
	if skip > 0 {
		v.malformed = true // a query has no answer or authority records
	}
	for i := 0; i < skip; i++ {
		var ok bool
		if off, _, ok = skipRecord(msg, off); !ok {
			return
		}
	}
	for i := 0; i < int(v.arcount); i++ {
		start := off
		var typ uint16
		var ok bool
		if off, typ, ok = skipRecord(msg, off); !ok {
			v.malformed = true
			return
		}
		switch {
		case typ == typeTSIG || typ == typeSIG:
			v.signed = true
		case typ != typeOPT:
		case msg[start] != 0 || v.hasOPT:
			// OPT's owner is the root, and there is one at most
			// (RFC 6891 §6.1.1): the backend answers FORMERR.
			v.malformed = true
			v.hasOPT = false
			return
		default:
			v.hasOPT = true
			v.optOff = start
			v.udpSize = binary.BigEndian.Uint16(msg[start+3:])
			v.ednsTTL = binary.BigEndian.Uint32(msg[start+5:])
			if !v.opts.read(msg, start, off) {
				v.malformed = true
			}
		}
	}
}

// skipRecord returns the offset past the resource record at off and its type.
func skipRecord(msg []byte, off int) (int, uint16, bool) {
	off, ok := skipName(msg, off)
	if !ok || off+10 > len(msg) {
		return 0, 0, false
	}
	typ := binary.BigEndian.Uint16(msg[off:])
	rdlen := int(binary.BigEndian.Uint16(msg[off+8:]))
	off += 10 + rdlen
	if off > len(msg) {
		return 0, 0, false
	}
	return off, typ, true
}

// skipName returns the offset past a possibly compressed name. A pointer ends
// the name in place, so it is never followed and cannot loop.
func skipName(msg []byte, off int) (int, bool) {
	for n := 0; n < maxNameLen; {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		switch {
		case l == 0:
			return off + 1, true
		case l&0xC0 == 0xC0:
			if off+2 > len(msg) {
				return 0, false
			}
			return off + 2, true
		case l > 63:
			return 0, false
		}
		off += 1 + l
		n += 1 + l
	}
	return 0, false
}

// matchResponse checks a backend's answer against the question that was sent:
// a response header, one question equal to it ignoring case. A header-only
// NOERROR or NXDOMAIN is refused as a backend failure (DESIGN.md); other
// header-only errors (FORMERR, REFUSED...) are passed on.
func matchResponse(resp []byte, v *msgView, question []byte) error {
	if err := v.parseHeader(resp); err != nil {
		return err
	}
	if v.flags&flagQR == 0 {
		return errBadResponse
	}
	if v.qdcount == 0 {
		if rc := v.rcode(); rc == rcodeNoError || rc == rcodeNXDomain {
			return errBadResponse
		}
		return nil
	}
	end := headerLen + len(question)
	if v.qdcount != 1 || len(resp) < end || !equalFoldWire(resp[headerLen:end], question) {
		return errBadResponse
	}
	v.qEnd = end
	// Every record must be whole: a datagram cut inside one would reach
	// the client as garbage. Names are skipped, not followed: cheap.
	off := end
	for i := 0; i < int(v.ancount)+int(v.nscount)+int(v.arcount); i++ {
		var ok bool
		if off, _, ok = skipRecord(resp, off); !ok {
			return errTruncatedMsg
		}
	}
	return nil
}

// fitUDP cuts an answer to the client's UDP limit the way truncateTo does
// for backend answers: header, question, OPT, TC set. It returns nil when
// even that does not fit or the answer cannot be read.
func fitUDP(resp []byte, limit int) []byte {
	if len(resp) <= limit {
		return resp
	}
	var v msgView
	if v.parseHeader(resp) != nil {
		return nil
	}
	if v.qdcount == 1 {
		off, ok := skipName(resp, headerLen)
		if !ok || off+4 > len(resp) {
			return nil
		}
		v.qEnd = off + 4
	}
	if n := truncateTo(resp, &v, limit); n > 0 {
		return resp[:n]
	}
	return nil
}

// equalFoldWire compares two wire-format questions, ASCII case-insensitively.
// Label length bytes are below 'A', so folding them is harmless.
func equalFoldWire(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// appendReply appends an answer anyfront makes itself: the query's header and
// question (when it had one) with QR set and rcode, and an OPT record only when
// the query carried one (payload 1232, DO echoed).
func appendReply(dst, query []byte, v *msgView, rcode int) []byte {
	flags := v.flags&(0xF<<11|flagRD|flagCD) | flagQR | flagRA | uint16(rcode&0xF)
	if rcode == rcodeFormErr || rcode == rcodeNotImp {
		// Judged on the query alone, before any recursion is offered:
		// the backends answer these without RA too.
		flags &^= flagRA
	}
	qd := uint16(0)
	if v.qEnd > headerLen {
		qd = 1
	}
	ar := uint16(0)
	if v.hasOPT {
		ar = 1
	}
	dst = binary.BigEndian.AppendUint16(dst, v.id)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, qd)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, ar)
	dst = append(dst, query[headerLen:v.qEnd]...)
	if v.hasOPT {
		dst = appendOPT(dst, v.do())
	}
	return dst
}

func appendOPT(dst []byte, do bool) []byte {
	dst = append(dst, 0, 0, typeOPT)
	dst = binary.BigEndian.AppendUint16(dst, ednsPayload)
	var z byte
	if do {
		z = 0x80
	}
	return append(dst, 0, 0, z, 0, 0, 0)
}

// truncateTo rewrites resp in place as a TC=1 answer that fits limit: header,
// question and the OPT record if the answer had one. It returns the new length,
// or 0 if even that does not fit.
func truncateTo(resp []byte, v *msgView, limit int) int {
	// Find the response's OPT so its EDNS view (options included) survives.
	optStart, optEnd := 0, 0
	off := v.qEnd
	records := int(v.ancount) + int(v.nscount)
	for i := 0; i < records+int(v.arcount); i++ {
		start := off
		var typ uint16
		var ok bool
		if off, typ, ok = skipRecord(resp, off); !ok {
			break
		}
		if i >= records && typ == typeOPT && resp[start] == 0 {
			optStart, optEnd = start, off
			break
		}
	}
	n := v.qEnd + optEnd - optStart
	if n > limit {
		return 0
	}
	binary.BigEndian.PutUint16(resp[2:], v.flags|flagTC)
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	binary.BigEndian.PutUint16(resp[10:], 0)
	if optEnd > optStart {
		copy(resp[v.qEnd:], resp[optStart:optEnd])
		binary.BigEndian.PutUint16(resp[10:], 1)
	}
	return n
}
