package dnswire

import (
	"encoding/binary"
	"errors"
)

// The hot path never unpacks a whole message: it reads the 12-byte header, the
// question and, when present, the OPT record, straight from the wire bytes.

const (
	HeaderLen = 12
	// MaxNameLen is RFC 1035's limit on a name's wire length.
	MaxNameLen = 255

	FlagQR = 1 << 15
	FlagAA = 1 << 10
	FlagTC = 1 << 9
	FlagRD = 1 << 8
	FlagRA = 1 << 7
	FlagCD = 1 << 4

	TypeOPT  = 41
	TypeSIG  = 24  // SIG(0), RFC 2931
	TypeTSIG = 250 // RFC 8945

	RcodeNoError  = 0
	RcodeFormErr  = 1
	RcodeServFail = 2
	RcodeNXDomain = 3
	RcodeNotImp   = 4
	RcodeRefused  = 5

	// MaxMessage is the largest DNS message: 64 KiB less one (TCP's
	// length prefix, and the largest UDP datagram a backend can send).
	MaxMessage = 65535

	// EDNSPayload is what anyfront advertises in answers it makes itself
	// (DNS flag day 2020).
	EDNSPayload = 1232
)

// Parse errors. Each is counted by kind and the packet is dropped, except
// where the caller answers FORMERR or NOTIMP.
var (
	ErrShort       = errors.New("shorter than a DNS header")
	ErrNotQuery    = errors.New("QR set in a query")
	ErrQDCount     = errors.New("QDCOUNT is not 1")
	ErrOpcode      = errors.New("opcode is not QUERY")
	ErrBadName     = errors.New("malformed question name")
	ErrTruncated   = errors.New("message ends inside a record")
	ErrBadResponse = errors.New("response does not match the query")
)

// View is the parsed view of a DNS message: offsets into the wire bytes and
// the few fields the proxy routes on. It is filled in place and holds no
// pointers, so a zero-allocation path can keep one per worker.
type View struct {
	ID      uint16
	Flags   uint16
	QDCount uint16
	ANCount uint16
	NSCount uint16
	ARCount uint16
	// QEnd is the offset just past the question (QTYPE and QCLASS included);
	// the question's wire bytes are msg[headerLen:QEnd].
	QEnd   int
	QType  uint16
	QClass uint16
	// lower is the question name in lowercase wire format; lowerLen its length.
	lower    [MaxNameLen]byte
	lowerLen int
	// HasOPT is set when the additional section carries an OPT record.
	HasOPT  bool
	UDPSize uint16 // OPT CLASS: the sender's UDP payload size
	EDNSTTL uint32 // OPT TTL: extended rcode, version, DO and Z flags
	// OPTOff is where the OPT record starts, when hasOPT.
	OPTOff int
	// Signed says the query carries a TSIG or SIG(0) record; Malformed,
	// that its records are ones a server refuses (records in the answer
	// or authority section, a second OPT or one not owned by the root,
	// damaged records, TC set). Either keeps the query away from the cache: its
	// answer is the backend's to give (RFC 8906: behave as the backend).
	Signed, Malformed bool
	// Opts are the query's per-client EDNS options (pcache/clientopts.go).
	Opts ClientOpts
	// ECS is what the query's pool does with EDNS Client Subnet (ECS.go).
	ECS ECSPlan
}

func (v *View) Opcode() int  { return int(v.Flags>>11) & 0xF }
func (v *View) Rcode() int   { return int(v.Flags & 0xF) }
func (v *View) DO() bool     { return v.HasOPT && v.EDNSTTL&0x8000 != 0 }
func (v *View) Name() []byte { return v.lower[:v.lowerLen] }

// MaxUDPResponse is the largest UDP answer the client said it can take.
func (v *View) MaxUDPResponse() int {
	if !v.HasOPT || v.UDPSize < 512 {
		return 512
	}
	return int(v.UDPSize)
}

// ParseHeader reads the fixed header.
func (v *View) ParseHeader(msg []byte) error {
	if len(msg) < HeaderLen {
		return ErrShort
	}
	v.ID = binary.BigEndian.Uint16(msg[0:])
	v.Flags = binary.BigEndian.Uint16(msg[2:])
	v.QDCount = binary.BigEndian.Uint16(msg[4:])
	v.ANCount = binary.BigEndian.Uint16(msg[6:])
	v.NSCount = binary.BigEndian.Uint16(msg[8:])
	v.ARCount = binary.BigEndian.Uint16(msg[10:])
	v.QEnd = HeaderLen
	v.lowerLen = 0
	v.HasOPT = false
	v.Signed, v.Malformed = false, false
	v.Opts = ClientOpts{}
	v.UDPSize = 0
	v.EDNSTTL = 0
	v.ECS.Mode, v.ECS.Client = ECSNone, ECSClientNone
	return nil
}

// ParseQuery validates a query as every front end must (DESIGN.md): a short
// packet or QR set is errShort/errNotQuery (drop); TC set is forwarded
// uncached (malformed); an opcode other than QUERY is errOpcode (NOTIMP),
// judged before QDCOUNT as RFC 8906 §3.1.4 has it, and reported once the
// question (if one) parsed so the NOTIMP can echo it; QDCOUNT != 1 is
// errQDCount (FORMERR); a bad name is errBadName (drop).
func (v *View) ParseQuery(msg []byte) error {
	if err := v.ParseHeader(msg); err != nil {
		return err
	}
	if v.Flags&FlagQR != 0 {
		return ErrNotQuery
	}
	if v.QDCount != 1 {
		v.findOPTAfter(msg, HeaderLen, 0)
		if v.Opcode() != 0 {
			return ErrOpcode
		}
		return ErrQDCount
	}
	if err := v.parseQuestion(msg); err != nil {
		return err
	}
	// The rest is only read to find the OPT record; a query whose later
	// records are damaged is still forwarded as the client sent it, so the
	// backend answers it exactly as it would directly.
	v.findOPTAfter(msg, v.QEnd, int(v.ANCount)+int(v.NSCount))
	if v.Flags&FlagTC != 0 {
		// Backends differ (unbound: FORMERR, BIND: an answer): the
		// backend answers it, never the cache.
		v.Malformed = true
	}
	if v.Opcode() != 0 {
		return ErrOpcode
	}
	return nil
}

// parseQuestion reads the single question. Compression pointers are refused:
// no legitimate client compresses the only name in a query, and refusing them
// rules out pointer loops.
func (v *View) parseQuestion(msg []byte) error {
	off := HeaderLen
	n := 0
	for {
		if off >= len(msg) {
			return ErrBadName
		}
		l := int(msg[off])
		if l == 0 {
			v.lower[n] = 0
			n++
			off++
			break
		}
		if l > 63 { // 0xC0 pointers and the reserved 0x40/0x80 label types
			return ErrBadName
		}
		if n+1+l+1 > MaxNameLen || off+1+l > len(msg) {
			return ErrBadName
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
		return ErrBadName
	}
	v.lowerLen = n
	v.QType = binary.BigEndian.Uint16(msg[off:])
	v.QClass = binary.BigEndian.Uint16(msg[off+2:])
	v.QEnd = off + 4
	return nil
}

// findOPTAfter skips skip records starting at off, then scans the additional
// section for the OPT record, noting what makes the query signed or
// malformed. It never fails: a damaged tail leaves hasOPT unset.
func (v *View) findOPTAfter(msg []byte, off, skip int) {
	if skip > 0 {
		v.Malformed = true // a query has no answer or authority records
	}
	for i := 0; i < skip; i++ {
		var ok bool
		if off, _, ok = SkipRecord(msg, off); !ok {
			return
		}
	}
	for i := 0; i < int(v.ARCount); i++ {
		start := off
		var typ uint16
		var ok bool
		if off, typ, ok = SkipRecord(msg, off); !ok {
			v.Malformed = true
			return
		}
		switch {
		case typ == TypeTSIG || typ == TypeSIG:
			v.Signed = true
		case typ != TypeOPT:
		case msg[start] != 0 || v.HasOPT:
			// OPT's owner is the root, and there is one at most
			// (RFC 6891 §6.1.1): the backend answers FORMERR.
			v.Malformed = true
			v.HasOPT = false
			return
		default:
			v.HasOPT = true
			v.OPTOff = start
			v.UDPSize = binary.BigEndian.Uint16(msg[start+3:])
			v.EDNSTTL = binary.BigEndian.Uint32(msg[start+5:])
			if !v.Opts.read(msg, start, off) {
				v.Malformed = true
			}
		}
	}
}

// SkipRecord returns the offset past the resource record at off and its type.
func SkipRecord(msg []byte, off int) (int, uint16, bool) {
	off, ok := SkipName(msg, off)
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

// SkipName returns the offset past a possibly compressed name. A pointer ends
// the name in place, so it is never followed and cannot loop.
func SkipName(msg []byte, off int) (int, bool) {
	for n := 0; n < MaxNameLen; {
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

// MatchResponse checks a backend's answer against the question that was sent:
// a response header, one question equal to it ignoring case. A header-only
// NOERROR or NXDOMAIN is refused as a backend failure (DESIGN.md); other
// header-only errors (FORMERR, REFUSED...) are passed on.
func MatchResponse(resp []byte, v *View, question []byte) error {
	if err := v.ParseHeader(resp); err != nil {
		return err
	}
	if v.Flags&FlagQR == 0 {
		return ErrBadResponse
	}
	if v.QDCount == 0 {
		if rc := v.Rcode(); rc == RcodeNoError || rc == RcodeNXDomain {
			return ErrBadResponse
		}
		return nil
	}
	end := HeaderLen + len(question)
	if v.QDCount != 1 || len(resp) < end || !EqualFold(resp[HeaderLen:end], question) {
		return ErrBadResponse
	}
	v.QEnd = end
	// Every record must be whole: a datagram cut inside one would reach
	// the client as garbage. Names are skipped, not followed: cheap.
	off := end
	for i := 0; i < int(v.ANCount)+int(v.NSCount)+int(v.ARCount); i++ {
		var ok bool
		if off, _, ok = SkipRecord(resp, off); !ok {
			return ErrTruncated
		}
	}
	return nil
}

// FitUDP cuts an answer to the client's UDP limit the way truncateTo does
// for backend answers: header, question, OPT, TC set. It returns nil when
// even that does not fit or the answer cannot be read.
func FitUDP(resp []byte, limit int) []byte {
	if len(resp) <= limit {
		return resp
	}
	var v View
	if v.ParseHeader(resp) != nil {
		return nil
	}
	if v.QDCount == 1 {
		off, ok := SkipName(resp, HeaderLen)
		if !ok || off+4 > len(resp) {
			return nil
		}
		v.QEnd = off + 4
	}
	if n := TruncateTo(resp, &v, limit); n > 0 {
		return resp[:n]
	}
	return nil
}

// EqualFold compares two wire-format questions, ASCII case-insensitively.
// Label length bytes are below 'A', so folding them is harmless.
func EqualFold(a, b []byte) bool {
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

// AppendReply appends an answer anyfront makes itself: the query's header and
// question (when it had one) with QR set and rcode, and an OPT record only when
// the query carried one (payload 1232, DO echoed).
func AppendReply(dst, query []byte, v *View, rcode int) []byte {
	flags := v.Flags&(0xF<<11|FlagRD|FlagCD) | FlagQR | FlagRA | uint16(rcode&0xF)
	if rcode == RcodeFormErr || rcode == RcodeNotImp {
		// Judged on the query alone, before any recursion is offered:
		// the backends answer these without RA too.
		flags &^= FlagRA
	}
	qd := uint16(0)
	if v.QEnd > HeaderLen {
		qd = 1
	}
	ar := uint16(0)
	if v.HasOPT {
		ar = 1
	}
	dst = binary.BigEndian.AppendUint16(dst, v.ID)
	dst = binary.BigEndian.AppendUint16(dst, flags)
	dst = binary.BigEndian.AppendUint16(dst, qd)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, ar)
	dst = append(dst, query[HeaderLen:v.QEnd]...)
	if v.HasOPT {
		dst = AppendOPT(dst, v.DO())
	}
	return dst
}

func AppendOPT(dst []byte, do bool) []byte {
	dst = append(dst, 0, 0, TypeOPT)
	dst = binary.BigEndian.AppendUint16(dst, EDNSPayload)
	var z byte
	if do {
		z = 0x80
	}
	return append(dst, 0, 0, z, 0, 0, 0)
}

// TruncateTo rewrites resp in place as a TC=1 answer that fits limit: header,
// question and the OPT record if the answer had one. It returns the new length,
// or 0 if even that does not fit.
func TruncateTo(resp []byte, v *View, limit int) int {
	// Find the response's OPT so its EDNS view (options included) survives.
	optStart, optEnd := 0, 0
	off := v.QEnd
	records := int(v.ANCount) + int(v.NSCount)
	for i := 0; i < records+int(v.ARCount); i++ {
		start := off
		var typ uint16
		var ok bool
		if off, typ, ok = SkipRecord(resp, off); !ok {
			break
		}
		if i >= records && typ == TypeOPT && resp[start] == 0 {
			optStart, optEnd = start, off
			break
		}
	}
	n := v.QEnd + optEnd - optStart
	if n > limit {
		return 0
	}
	binary.BigEndian.PutUint16(resp[2:], v.Flags|FlagTC)
	binary.BigEndian.PutUint16(resp[6:], 0)
	binary.BigEndian.PutUint16(resp[8:], 0)
	binary.BigEndian.PutUint16(resp[10:], 0)
	if optEnd > optStart {
		copy(resp[v.QEnd:], resp[optStart:optEnd])
		binary.BigEndian.PutUint16(resp[10:], 1)
	}
	return n
}
