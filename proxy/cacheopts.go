package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"
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
	optNSID      = 3
	optECS       = 8
	optExpire    = 9
	optCookie    = 10
	optEDE       = 15
	cookieClient = 8  // client cookie length
	cookieServer = 16 // RFC 9018 server cookie: version, reserved, time, hash
)

// clientOpts is what a query's OPT asks of the answering server.
type clientOpts struct {
	cookieOff    uint16 // offset of the client cookie in the query; 0: none
	nsid, expire bool
}

// read notes the per-client options of the OPT record at msg[start:end]. It
// reports false for a damaged option list or a malformed COOKIE, which the
// backend answers FORMERR and the cache must not.
func (o *clientOpts) read(msg []byte, start, end int) bool {
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
		case optNSID:
			o.nsid = true
		case optExpire:
			o.expire = true
		case optCookie:
			// RFC 7873 §5.2.2: 8 bytes, or 16 to 40 with a server cookie.
			if n != cookieClient && (n < 16 || n > 40) || o.cookieOff != 0 {
				return false
			}
			o.cookieOff = uint16(data)
		}
		off = data + n
	}
	return true
}

// bypass reports whether the query must be answered by a backend: it is
// signed, malformed, or asks for something only the backend knows.
func (v *msgView) bypass() bool {
	return v.signed || v.malformed || v.opts.nsid || v.opts.expire
}

// answerOPT finds the OPT record of an answer: its start and end offsets.
func answerOPT(resp []byte) (start, end int, ok bool) {
	if len(resp) < headerLen || binary.BigEndian.Uint16(resp[4:]) != 1 {
		return 0, 0, false
	}
	off, ok := skipName(resp, headerLen)
	if !ok || off+4 > len(resp) {
		return 0, 0, false
	}
	off += 4
	an := int(binary.BigEndian.Uint16(resp[6:])) + int(binary.BigEndian.Uint16(resp[8:]))
	ar := int(binary.BigEndian.Uint16(resp[10:]))
	for i := 0; i < an+ar; i++ {
		s := off
		var typ uint16
		if off, typ, ok = skipRecord(resp, off); !ok {
			return 0, 0, false
		}
		if i >= an && typ == typeOPT && resp[s] == 0 {
			return s, off, true
		}
	}
	return 0, 0, false
}

// stripClientOpts removes from the answer in *b every EDNS option but ECS and
// EDE, in place. It returns how many bytes went and where: offsets past at
// move back by removed.
func stripClientOpts(b *[]byte) (removed, at int) {
	resp := *b
	s, e, ok := answerOPT(resp)
	if !ok {
		return 0, 0
	}
	w := s + 11
	for r := s + 11; r+4 <= e; {
		n := 4 + int(binary.BigEndian.Uint16(resp[r+2:]))
		if r+n > e {
			return 0, 0 // damaged: the store's own checks refuse it
		}
		if code := binary.BigEndian.Uint16(resp[r:]); code == optECS || code == optEDE {
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

// cookieOptLen is a COOKIE option with client and server cookie.
const cookieOptLen = 4 + cookieClient + cookieServer

var zeros [cookieOptLen]byte

// answerCookie adds to a cached answer, out[start:], the COOKIE a server
// gives the query's client cookie, when it sent one. An answer without an
// OPT (the backend had no EDNS) gets none, as it would from the backend.
func (c *cookieSecret) answerCookie(out []byte, start int, msg []byte, v *msgView, client []byte, now int64) []byte {
	if v.opts.cookieOff == 0 {
		return out
	}
	s, e, ok := answerOPT(out[start:])
	if !ok {
		return out
	}
	s, e = start+s, start+e
	n := len(out)
	out = append(out, zeros[:]...)
	copy(out[e+cookieOptLen:], out[e:n])
	o := out[e:]
	binary.BigEndian.PutUint16(o, optCookie)
	binary.BigEndian.PutUint16(o[2:], cookieClient+cookieServer)
	cc := msg[v.opts.cookieOff : v.opts.cookieOff+cookieClient]
	copy(o[4:], cc)
	sc := o[4+cookieClient:]
	sc[0] = 1 // version
	sc[1], sc[2], sc[3] = 0, 0, 0
	binary.BigEndian.PutUint32(sc[4:], uint32(now/1e9))
	binary.BigEndian.PutUint64(sc[8:], c.hash(cc, sc[:8], client))
	rdlen := binary.BigEndian.Uint16(out[s+9:])
	binary.BigEndian.PutUint16(out[s+9:], rdlen+cookieOptLen)
	return out
}

// cookieSecret keys the server cookies of cache hits; made at start, so a
// restart changes it and clients simply learn the new cookie.
type cookieSecret struct{ k0, k1 uint64 }

// hitCookies is the process's secret, read-only after init.
var hitCookies = newCookieSecret()

func newCookieSecret() *cookieSecret {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand does not fail on Linux (getrandom)
	return &cookieSecret{binary.LittleEndian.Uint64(b[:]), binary.LittleEndian.Uint64(b[8:])}
}

// withCookie is answerCookie for a hit answered to client.
func withCookie(out []byte, start int, msg []byte, v *msgView, client netip.Addr, now int64) []byte {
	if v.opts.cookieOff == 0 {
		return out
	}
	a := client.Unmap()
	if a.Is4() {
		b := a.As4()
		return hitCookies.answerCookie(out, start, msg, v, b[:], now)
	}
	b := a.As16()
	return hitCookies.answerCookie(out, start, msg, v, b[:], now)
}

// hash is RFC 9018's: SipHash-2-4 over client cookie, version, reserved,
// timestamp and client address.
func (c *cookieSecret) hash(cc, head, client []byte) uint64 {
	var buf [cookieClient + 8 + 16]byte
	n := copy(buf[:], cc)
	n += copy(buf[n:], head)
	n += copy(buf[n:], client)
	return siphash24(c.k0, c.k1, buf[:n])
}

// siphash24 is SipHash-2-4 (Aumasson and Bernstein), the hash RFC 9018
// names; a few lines here rather than a dependency for one call.
func siphash24(k0, k1 uint64, p []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(p)
	for len(p) >= 8 {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		round()
		round()
		v0 ^= m
		p = p[8:]
	}
	var last [8]byte
	copy(last[:], p)
	last[7] = byte(n)
	m := binary.LittleEndian.Uint64(last[:])
	v3 ^= m
	round()
	round()
	v0 ^= m
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
