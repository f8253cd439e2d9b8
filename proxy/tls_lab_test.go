package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anyfront/anyfront/internal/testlab"
)

// These tests drive the TLS of the DoT, DoH and DoQ listeners with real
// clients (Go's crypto/tls, net/http and quic-go; openssl s_client in
// tls_openssl_lab_test.go) against a proxy in front of a real unbound.

// waitTLS polls cond until it holds, failing with what after 10s: key
// files are looked at again at most once a second, on a handshake.
func waitTLS(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLabTLSResumption(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	c := testlab.SelfSignedCert(t, t.TempDir(), "node")
	n := startTLSNode(t, addrPicker{}, u, fmt.Sprintf("{cert: %q, key: %q}", c.CertFile, c.KeyFile))

	for _, v := range []struct {
		name string
		max  uint16
	}{{"TLS 1.3", tls.VersionTLS13}, {"TLS 1.2", tls.VersionTLS12}} {
		t.Run("DoT "+v.name+": the second connection resumes with the ticket of the first", func(t *testing.T) {
			full0, res0 := n.handshakes("dot")
			conf := clientTLS(c.Pool, tls.NewLRUClientSessionCache(4), "dot")
			conf.MaxVersion = v.max
			if st := dotQuery(t, n.dot, conf); st.DidResume || st.Version != v.max {
				t.Fatalf("first connection: resumed %v, version %x", st.DidResume, st.Version)
			}
			if st := dotQuery(t, n.dot, conf); !st.DidResume {
				t.Fatal("second connection did not resume")
			}
			if full, res := n.handshakes("dot"); full-full0 != 1 || res-res0 != 1 {
				t.Errorf("counted %d full and %d resumed handshakes, want 1 and 1", full-full0, res-res0)
			}
		})
	}
	t.Run("DoH: a new connection resumes", func(t *testing.T) {
		tr := &http.Transport{TLSClientConfig: clientTLS(c.Pool, tls.NewLRUClientSessionCache(4)), ForceAttemptHTTP2: true}
		hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		defer tr.CloseIdleConnections()
		url := "https://" + n.doh + "/dns-query"
		for i, want := range []bool{false, true} {
			resp, err := hc.Get(url + "?dns=AAABAAABAAAAAAAABGRlbW8EdGVzdAAAAQAB") // demo.test A
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections() // the next request dials again
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.TLS.DidResume != want {
				t.Fatalf("request %d: status %d, HTTP/%d, resumed %v", i, resp.StatusCode, resp.ProtoMajor, resp.TLS.DidResume)
			}
		}
		if full, res := n.handshakes("doh"); full != 1 || res != 1 {
			t.Errorf("counted %d full and %d resumed handshakes, want 1 and 1", full, res)
		}
	})
	t.Run("DoQ: a new QUIC connection resumes", func(t *testing.T) {
		conf := clientTLS(c.Pool, tls.NewLRUClientSessionCache(4), "doq")
		if st := doqSession(t, n.doq, conf); st.DidResume {
			t.Fatal("first connection resumed")
		}
		if st := doqSession(t, n.doq, conf); !st.DidResume {
			t.Fatal("second connection did not resume")
		}
		if full, res := n.handshakes("doq"); full != 1 || res != 1 {
			t.Errorf("counted %d full and %d resumed handshakes, want 1 and 1", full, res)
		}
	})
	t.Run("the counts are metrics", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(n.p.Collector())
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, mf := range mfs {
			if mf.GetName() != "anyfront_proxy_tls_handshakes_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				got[l["protocol"]+"/"+l["kind"]] = m.GetCounter().GetValue()
			}
		}
		want := map[string]float64{"dot/full": 2, "dot/resumed": 2, "doh/full": 1, "doh/resumed": 1, "doq/full": 1, "doq/resumed": 1}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("anyfront_proxy_tls_handshakes_total %s = %v, want %v (all: %v)", k, got[k], v, got)
			}
		}
	})
}

// TestLabTLSTicketKeysShared: nodes behind ECMP given the same
// ticket_key_file resume each other's sessions; with other keys they do not.
func TestLabTLSTicketKeysShared(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	dir := t.TempDir()
	c := testlab.SelfSignedCert(t, dir, "fleet")
	shared, other := filepath.Join(dir, "shared.keys"), filepath.Join(dir, "other.keys")
	writeKeys(t, shared, "# fleet ticket keys, newest first", ticketKey(t), ticketKey(t))
	writeKeys(t, other, ticketKey(t))
	tlsWith := func(keys string) string {
		return fmt.Sprintf("{cert: %q, key: %q, ticket_key_file: %q}", c.CertFile, c.KeyFile, keys)
	}
	addrs := addrPicker{}
	a := startTLSNode(t, addrs, u, tlsWith(shared))
	b := startTLSNode(t, addrs, u, tlsWith(shared))
	x := startTLSNode(t, addrs, u, tlsWith(other))
	plain := startTLSNode(t, addrs, u, fmt.Sprintf("{cert: %q, key: %q}", c.CertFile, c.KeyFile))

	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(fmt.Sprintf("DoT version %x: a session from node A resumes on node B", v), func(t *testing.T) {
			sess := &oneSession{}
			conf := clientTLS(c.Pool, sess, "dot")
			conf.MaxVersion = v
			if st := dotQuery(t, a.dot, conf); st.DidResume {
				t.Fatal("first connection resumed")
			}
			_, res0 := b.handshakes("dot")
			if st := dotQuery(t, b.dot, conf); !st.DidResume {
				t.Fatal("node B did not resume node A's session")
			}
			if _, res := b.handshakes("dot"); res != res0+1 {
				t.Errorf("node B counted %d resumptions, want 1", res-res0)
			}
			for name, n := range map[string]*tlsNode{"other keys": x, "no key file": plain} {
				full0, _ := n.handshakes("dot")
				if st := dotQuery(t, n.dot, conf); st.DidResume {
					t.Errorf("a node with %s resumed node A's session", name)
				}
				if full, _ := n.handshakes("dot"); full != full0+1 {
					t.Errorf("a node with %s counted %d full handshakes, want 1", name, full-full0)
				}
			}
		})
	}
	t.Run("DoQ: a session from node A resumes on node B, not on a node with other keys", func(t *testing.T) {
		conf := clientTLS(c.Pool, &oneSession{}, "doq")
		doqSession(t, a.doq, conf)
		if !doqSession(t, b.doq, conf).DidResume {
			t.Error("node B did not resume")
		}
		if doqSession(t, x.doq, conf).DidResume {
			t.Error("the node with other keys resumed")
		}
	})
	t.Run("DoH: a session from node A resumes on node B", func(t *testing.T) {
		conf := clientTLS(c.Pool, &oneSession{})
		for i, n := range []*tlsNode{a, b, x} {
			tr := &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + n.doh + "/dns-query?dns=AAABAAABAAAAAAAABGRlbW8EdGVzdAAAAQAB")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if want := i == 1; resp.TLS.DidResume != want {
				t.Errorf("node %d: resumed %v, want %v", i, resp.TLS.DidResume, want)
			}
		}
	})
}

// TestLabTLSTicketKeyRoll: an operator rolls the keys by prepending a new
// one and later dropping the old one; a file that does not parse keeps the
// keys in use and is counted.
func TestLabTLSTicketKeyRoll(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	dir := t.TempDir()
	c := testlab.SelfSignedCert(t, dir, "roll")
	k1, k2 := ticketKey(t), ticketKey(t)
	fa, fb := filepath.Join(dir, "a.keys"), filepath.Join(dir, "b.keys")
	writeKeys(t, fa, k1)
	writeKeys(t, fb, k2) // node B already has only the next key
	tlsWith := func(keys string) string {
		return fmt.Sprintf("{cert: %q, key: %q, ticket_key_file: %q}", c.CertFile, c.KeyFile, keys)
	}
	addrs := addrPicker{}
	a := startTLSNode(t, addrs, u, tlsWith(fa))
	b := startTLSNode(t, addrs, u, tlsWith(fb))
	dot := func(s tls.ClientSessionCache) *tls.Config { return clientTLS(c.Pool, s, "dot") }
	// resumesOn: a fresh session from A resumes on n.
	resumesOn := func(n *tlsNode) bool {
		conf := dot(&oneSession{})
		dotQuery(t, a.dot, conf)
		return dotQuery(t, n.dot, conf).DidResume
	}

	old := &oneSession{} // a session sealed with k1
	dotQuery(t, a.dot, dot(old))
	if resumesOn(b) {
		t.Fatal("node B resumed a session sealed with a key it does not have")
	}
	t.Run("a new first key seals new sessions; old ones still resume", func(t *testing.T) {
		writeKeys(t, fa, k2, k1)
		waitTLS(t, "node A sealing with the new key (its sessions resuming on node B)", func() bool { return resumesOn(b) })
		if !dotQuery(t, a.dot, dot(old)).DidResume {
			t.Error("a session sealed with the old key did not resume while the key is in the file")
		}
	})
	t.Run("a file that does not parse keeps the keys and is counted", func(t *testing.T) {
		writeKeys(t, fa, k2, "not-a-key")
		waitTLS(t, "the bad file counted", func() bool {
			dotQuery(t, a.dot, dot(nil))
			return a.p.TransportStats()["dot"].TicketKeysRejected == 1
		})
		if !dotQuery(t, a.dot, dot(old)).DidResume || !resumesOn(b) {
			t.Error("the keys in use changed after a bad file")
		}
		// The same bad file is counted once, however many handshakes see it.
		if n := a.p.TransportStats()["dot"].TicketKeysRejected; n != 1 {
			t.Errorf("bad file counted %d times", n)
		}
	})
	t.Run("the old key dropped: its sessions no longer resume", func(t *testing.T) {
		writeKeys(t, fa, k2)
		waitTLS(t, "the old key's sessions refused", func() bool { return !dotQuery(t, a.dot, dot(old)).DidResume })
		if !resumesOn(b) {
			t.Error("sessions sealed with the new key stopped resuming")
		}
	})
}

// TestLabTLSECDSAPreferred: with an RSA and an ECDSA certificate (RSA
// first in the file), a client that can take ECDSA gets it, one that
// offers only RSA suites (TLS 1.2) gets RSA.
func TestLabTLSECDSAPreferred(t *testing.T) {
	testlab.RequireBinary(t, "unbound")
	u := testlab.StartUnbound(t, testlab.UnboundOptions{})
	dir := t.TempDir()
	ec := testlab.SelfSignedCert(t, dir, "ecdsa")
	pool := ec.Pool
	rsaCrt, rsaKey := rsaCert(t, dir, "rsa", pool)
	n := startTLSNode(t, addrPicker{}, u, fmt.Sprintf("{cert: %q, key: %q, certs: [{cert: %q, key: %q}]}", rsaCrt, rsaKey, ec.CertFile, ec.KeyFile))
	rsaOnly := func(conf *tls.Config) *tls.Config {
		conf.MaxVersion = tls.VersionTLS12
		conf.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305}
		return conf
	}
	algo := func(st tls.ConnectionState) x509.PublicKeyAlgorithm { return st.PeerCertificates[0].PublicKeyAlgorithm }
	for _, tc := range []struct {
		name string
		conf *tls.Config
		want x509.PublicKeyAlgorithm
	}{
		{"TLS 1.3 client", clientTLS(pool, nil, "dot"), x509.ECDSA},
		{"TLS 1.2 client with ECDSA suites", func() *tls.Config { c := clientTLS(pool, nil, "dot"); c.MaxVersion = tls.VersionTLS12; return c }(), x509.ECDSA},
		{"TLS 1.2 client with RSA suites only", rsaOnly(clientTLS(pool, nil, "dot")), x509.RSA},
	} {
		t.Run("DoT: "+tc.name, func(t *testing.T) {
			if got := algo(dotQuery(t, n.dot, tc.conf)); got != tc.want {
				t.Errorf("served %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("DoH: ECDSA by default, RSA for an RSA-only client", func(t *testing.T) {
		for _, tc := range []struct {
			conf *tls.Config
			want x509.PublicKeyAlgorithm
		}{{clientTLS(pool, nil), x509.ECDSA}, {rsaOnly(clientTLS(pool, nil)), x509.RSA}} {
			tr := &http.Transport{TLSClientConfig: tc.conf, ForceAttemptHTTP2: true}
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + n.doh + "/dns-query?dns=AAABAAABAAAAAAAABGRlbW8EdGVzdAAAAQAB")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if got := algo(*resp.TLS); resp.StatusCode != 200 || got != tc.want {
				t.Errorf("status %d, served %v, want %v", resp.StatusCode, got, tc.want)
			}
		}
	})
	t.Run("DoQ: ECDSA", func(t *testing.T) {
		if got := algo(doqSession(t, n.doq, clientTLS(pool, nil, "doq"))); got != x509.ECDSA {
			t.Errorf("served %v", got)
		}
	})
}
