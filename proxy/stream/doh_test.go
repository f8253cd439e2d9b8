package stream

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/dnstest"
)

func TestDoHAnswerTTL(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	positive := dnstest.Query("demo.test.", dns.TypeA)
	positive.Response = true
	positive.Answer = []dns.RR{rr("demo.test. 300 IN A 192.0.2.10"), rr("demo.test. 60 IN A 192.0.2.11")}
	positive.SetEdns0(1232, false)
	negative := dnstest.Query("nx.demo.test.", dns.TypeA)
	negative.Response = true
	negative.Rcode = dns.RcodeNameError
	negative.Ns = []dns.RR{rr("demo.test. 3600 IN SOA ns. host. 1 2 3 4 30")}
	servfail := dnstest.Query("demo.test.", dns.TypeA)
	servfail.Response = true
	servfail.Rcode = dns.RcodeServerFailure
	tests := []struct {
		name string
		msg  *dns.Msg
		want uint32
	}{
		{"smallest answer TTL", positive, 60},
		{"negative answer lives for the SOA minimum", negative, 30},
		{"no records: not cacheable", servfail, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := answerTTL(dnstest.Pack(t, tc.msg)); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
	t.Run("garbage is not cacheable and does not panic", func(t *testing.T) {
		b := dnstest.Pack(t, positive)
		for i := range b {
			_ = answerTTL(b[:i])
		}
	})
}

// TestDoHStatus checks RFC 8484's answers to each kind of request, with a
// stand-in for the core (the lab tests in proxy do it with unbound behind).
func TestDoHStatus(t *testing.T) {
	k := newKit(t)
	d := NewDoH(k.tcpListener(), DoHConfig{Limits: testLimits, Certs: k.certs}, k.deps())
	done := serve(context.Background(), d)
	t.Cleanup(func() { d.Close(); wait(t, done) })
	// HTTP/2 reaches our own server (h2), HTTP/1.1 net/http's: the same
	// answers from both.
	h2c := &http.Client{Transport: &http.Transport{TLSClientConfig: k.pool.Clone(), ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
	h1c := &http.Client{Transport: &http.Transport{TLSClientConfig: k.pool.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}, Timeout: 5 * time.Second}
	t.Cleanup(h2c.CloseIdleConnections)
	t.Cleanup(h1c.CloseIdleConnections)
	bad := func() uint64 {
		var n Counts
		n.Add(d.Counters())
		return n.BadRequests
	}
	url := "https://" + d.Addr().String() + "/dns-query"
	valid := dnstest.Pack(t, dnstest.Query("a.example.", dns.TypeA))
	get := func(b []byte) string { return url + "?dns=" + base64.RawURLEncoding.EncodeToString(b) }
	for _, tc := range []struct {
		name, method, url, ctype string
		body                     []byte
		drop                     bool
		want                     int
	}{
		{"POST answered", "POST", url, dohMediaType, valid, false, 200},
		{"GET answered", "GET", get(valid), "", nil, false, 200},
		{"HEAD answered", "HEAD", get(valid), "", nil, false, 200},
		{"wrong content type", "POST", url, "text/plain", valid, false, 415},
		{"no content type", "POST", url, "", valid, false, 415},
		{"malformed DNS", "POST", url, dohMediaType, valid[:7], false, 400},
		{"oversized body", "POST", url, dohMediaType, make([]byte, 70000), false, 413},
		{"bad method", "PUT", url, dohMediaType, valid, false, 405},
		{"wrong path", "POST", "https://" + d.Addr().String() + "/other", dohMediaType, valid, false, 404},
		{"GET without dns", "GET", url, "", nil, false, 400},
		{"GET with bad base64", "GET", url + "?dns=ab$cd", "", nil, false, 400},
		{"a dropped query", "POST", url, dohMediaType, valid, true, 403},
	} {
		for _, c := range []*http.Client{h2c, h1c} {
			t.Run(tc.name, func(t *testing.T) {
				k.h.drop.Store(tc.drop)
				before := bad()
				req, _ := http.NewRequest(tc.method, tc.url, bytes.NewReader(tc.body))
				if tc.ctype != "" {
					req.Header.Set("Content-Type", tc.ctype)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, b)
				}
				if want := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[c == h2c]; resp.Proto != want {
					t.Errorf("served over %s, want %s", resp.Proto, want)
				}
				if counted := bad() - before; (tc.want != 200) != (counted == 1) {
					t.Errorf("bad requests counted %d", counted)
				}
				if tc.want == 200 {
					if ct := resp.Header.Get("Content-Type"); ct != dohMediaType {
						t.Errorf("content type %q", ct)
					}
					if tc.method != "HEAD" && (len(b) < 12 || b[2]&0x80 == 0) {
						t.Errorf("body is not a DNS response: %x", b)
					}
				}
			})
		}
	}
	if last := k.h.last.Load(); last.tr != dnswire.DoH || last.client.Addr() != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("the handler got transport %s from %v", dnswire.TransportName(last.tr), last.client)
	}
}
