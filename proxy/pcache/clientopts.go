package pcache

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"
	"net/netip"

	"github.com/anyfront/anyfront/proxy/dnswire"
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

// cookieOptLen is a COOKIE option with client and server cookie.
const cookieOptLen = 4 + dnswire.CookieClient + dnswire.CookieServer

var zeros [cookieOptLen]byte

// answerCookie adds to a cached answer, out[start:], the COOKIE a server
// gives the query's client cookie, when it sent one. An answer without an
// OPT (the backend had no EDNS) gets none, as it would from the backend.
func (c *cookieSecret) answerCookie(out []byte, start int, msg []byte, v *dnswire.View, client []byte, now int64) []byte {
	if v.Opts.CookieOff == 0 {
		return out
	}
	s, e, ok := dnswire.AnswerOPT(out[start:])
	if !ok {
		return out
	}
	s, e = start+s, start+e
	n := len(out)
	out = append(out, zeros[:]...)
	copy(out[e+cookieOptLen:], out[e:n])
	o := out[e:]
	binary.BigEndian.PutUint16(o, dnswire.OptCookie)
	binary.BigEndian.PutUint16(o[2:], dnswire.CookieClient+dnswire.CookieServer)
	cc := msg[v.Opts.CookieOff : v.Opts.CookieOff+dnswire.CookieClient]
	copy(o[4:], cc)
	sc := o[4+dnswire.CookieClient:]
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

// WithCookie adds to a hit, out[start:], answered to client for the query
// in msg (parsed into v), the COOKIE a server gives the query's client
// cookie, if it sent one. now is the caller's clock in nanoseconds.
func WithCookie(out []byte, start int, msg []byte, v *dnswire.View, client netip.Addr, now int64) []byte {
	if v.Opts.CookieOff == 0 {
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
	var buf [dnswire.CookieClient + 8 + 16]byte
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
