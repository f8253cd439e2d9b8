package dnswire

import (
	"encoding/binary"
)

// EDNS options that belong to one client never enter the packet cache, and a
// cache hit answers the asking client's options as a server would:
//
//   - COOKIE (RFC 7873): the stored answer has none; a hit for a query with a
//     client cookie echoes it with a server cookie of anyfront's own (RFC
//     9018 layout, SipHash-2-4 under a secret made at start). A resolver
//     that once saw a cookie from this address and then gets none takes
//     the answer for a spoof and retries over TCP (BIND does): a
//     cookie-less hit would move every such resolver to TCP.
//   - NSID (RFC 5001) and EXPIRE (RFC 7314): a query carrying either
//     bypasses the cache. NSID names the server that answered, which is
//     what an operator asking it debugs; EXPIRE is for secondaries
//     refreshing a zone, and only the authority knows its value.
//   - PADDING (RFC 7830), TCP-KEEPALIVE and every other option: stripped
//     from stored answers; a hit carries none.
//
// ECS (ecs.go, which scopes entries) and Extended DNS Errors (which describe
// the answer, not the client) stay in stored answers.

const (
	OptNSID      = 3
	OptECS       = 8
	OptExpire    = 9
	OptCookie    = 10
	OptEDE       = 15
	CookieClient = 8  // client cookie length
	CookieServer = 16 // RFC 9018 server cookie: version, reserved, time, hash
)

// ClientOpts is what a query's OPT asks of the answering server.
type ClientOpts struct {
	CookieOff    uint16 // offset of the client cookie in the query; 0: none
	NSID, Expire bool
}

// read notes the per-client options of the OPT record at msg[start:end]. It
// reports false for a damaged option list or a malformed COOKIE, which the
// backend answers FORMERR and the cache must not.
func (o *ClientOpts) read(msg []byte, start, end int) bool {
	off := start + 11 // owner, TYPE, CLASS, TTL, RDLENGTH
	for off < end {
		if off+4 > end {
			return false
		}
		code := binary.BigEndian.Uint16(msg[off:])
		n := int(binary.BigEndian.Uint16(msg[off+2:]))
		data := off + 4
		if data+n > end {
			return false
		}
		switch code {
		case OptNSID:
			o.NSID = true
		case OptExpire:
			o.Expire = true
		case OptCookie:
			// RFC 7873 §5.2.2: 8 bytes, or 16 to 40 with a server cookie.
			if n != CookieClient && (n < 16 || n > 40) || o.CookieOff != 0 {
				return false
			}
			o.CookieOff = uint16(data)
		}
		off = data + n
	}
	return true
}

// Bypass reports whether the query must be answered by a backend: it is
// signed, malformed, or asks for something only the backend knows.
func (v *View) Bypass() bool {
	return v.Signed || v.Malformed || v.Opts.NSID || v.Opts.Expire
}

// AnswerOPT finds the OPT record of an answer: its start and end offsets.
func AnswerOPT(resp []byte) (start, end int, ok bool) {
	if len(resp) < HeaderLen || binary.BigEndian.Uint16(resp[4:]) != 1 {
		return 0, 0, false
	}
	off, ok := SkipName(resp, HeaderLen)
	if !ok || off+4 > len(resp) {
		return 0, 0, false
	}
	off += 4
	an := int(binary.BigEndian.Uint16(resp[6:])) + int(binary.BigEndian.Uint16(resp[8:]))
	ar := int(binary.BigEndian.Uint16(resp[10:]))
	for i := 0; i < an+ar; i++ {
		s := off
		var typ uint16
		if off, typ, ok = SkipRecord(resp, off); !ok {
			return 0, 0, false
		}
		if i >= an && typ == TypeOPT && resp[s] == 0 {
			return s, off, true
		}
	}
	return 0, 0, false
}

// StripClientOpts removes from the answer in *b every EDNS option but ECS and
// EDE, in place. It returns how many bytes went and where: offsets past at
// move back by removed.
func StripClientOpts(b *[]byte) (removed, at int) {
	resp := *b
	s, e, ok := AnswerOPT(resp)
	if !ok {
		return 0, 0
	}
	w := s + 11
	for r := s + 11; r+4 <= e; {
		n := 4 + int(binary.BigEndian.Uint16(resp[r+2:]))
		if r+n > e {
			return 0, 0 // damaged: the store's own checks refuse it
		}
		if code := binary.BigEndian.Uint16(resp[r:]); code == OptECS || code == OptEDE {
			copy(resp[w:], resp[r:r+n])
			w += n
		}
		r += n
	}
	removed = e - w
	if removed == 0 {
		return 0, 0
	}
	binary.BigEndian.PutUint16(resp[s+9:], uint16(w-s-11))
	copy(resp[w:], resp[e:])
	*b = resp[:len(resp)-removed]
	return removed, e
}
