package h2

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/anyfront/anyfront/internal/testlab"
	"golang.org/x/net/http2"
)

var benchInProc = flag.Bool("h2bench.inproc", false,
	"BenchmarkDoH runs its servers in the benchmark's own process (for -cpuprofile and -memprofile; CPU and allocations then include the client's)")

// benchServers are the arms, run side by side for each workload.
var benchServers = []string{"h2", "nethttp"}

// BenchmarkDoH compares our server with net/http's on one workload: DoH
// POST or GET of one small query, echoed at once, over loopback TLS, with
// conns connections each keeping streams requests in flight. The client is
// x/net/http2's, one ClientConn per connection. Besides ns/op (wall time
// per request over all connections) it reports the server process's CPU
// (srv-cpu-ns/op) and allocations (srv-allocs/op, srv-B/op), and the
// client's CPU (cli-cpu-ns/op); allocs/op is the client's.
func BenchmarkDoH(b *testing.B) {
	dir := b.TempDir()
	cert := testlab.SelfSignedCert(b, dir, "bench")
	kp, err := tls.LoadX509KeyPair(cert.CertFile, cert.KeyFile)
	if err != nil {
		b.Fatal(err)
	}
	srvs := map[string]*benchServer{}
	for _, kind := range benchServers {
		var s *benchServer
		if *benchInProc {
			s, err = startInProc(kind, kp)
		} else {
			s, err = startChild(kind, cert.CertFile, cert.KeyFile)
		}
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(s.stop)
		srvs[kind] = s
	}
	for _, method := range []string{"POST", "GET"} {
		for _, w := range []struct{ conns, streams int }{{1, 1}, {1, 16}, {1, 100}, {4, 16}, {4, 100}} {
			for _, kind := range benchServers {
				name := fmt.Sprintf("%s/conns=%d/streams=%d/server=%s", method, w.conns, w.streams, kind)
				b.Run(name, func(b *testing.B) {
					runDoH(b, srvs[kind], cert.Pool, method, w.conns, w.streams)
				})
			}
		}
	}
}

func runDoH(b *testing.B, s *benchServer, pool *x509.CertPool, method string, conns, streams int) {
	tr := &http2.Transport{}
	ccs := make([]*http2.ClientConn, conns)
	for i := range ccs {
		tc, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"h2"}})
		if err != nil {
			b.Fatal(err)
		}
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			b.Fatalf("ALPN %q, want h2", p)
		}
		cc, err := tr.NewClientConn(tc)
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		ccs[i] = cc
	}
	q := query(0x1234)
	u, err := url.Parse("https://" + s.addr + DefaultPath)
	if err != nil {
		b.Fatal(err)
	}
	if method == "GET" {
		u.RawQuery = "dns=" + b64(q)
	}
	hdr := http.Header{}
	if method == "POST" {
		hdr.Set("Content-Type", MediaType)
		hdr.Set("Content-Length", strconv.Itoa(len(q)))
	}
	// Every connection answers before the clock starts.
	for _, cc := range ccs {
		if err := roundTrip(cc, method, u, hdr, q); err != nil {
			b.Fatal(err)
		}
	}
	var left atomic.Int64
	left.Store(int64(b.N))
	var failed atomic.Pointer[error]
	var wg sync.WaitGroup
	b.ReportAllocs()
	u0, err := s.usage()
	if err != nil {
		b.Fatal(err)
	}
	c0 := selfUsage().cpu
	b.ResetTimer()
	for _, cc := range ccs {
		for range streams {
			wg.Go(func() {
				for left.Add(-1) >= 0 {
					if err := roundTrip(cc, method, u, hdr, q); err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	c1 := selfUsage().cpu
	u1, err := s.usage()
	if err != nil {
		b.Fatal(err)
	}
	n := float64(b.N)
	if *benchInProc {
		b.ReportMetric(float64(c1-c0)/n, "cpu-ns/op")
		return
	}
	b.ReportMetric(float64(u1.cpu-u0.cpu)/n, "srv-cpu-ns/op")
	b.ReportMetric(float64(u1.mallocs-u0.mallocs)/n, "srv-allocs/op")
	b.ReportMetric(float64(u1.bytes-u0.bytes)/n, "srv-B/op")
	b.ReportMetric(float64(c1-c0)/n, "cli-cpu-ns/op")
}

// roundTrip sends one request and checks its answer is the echo.
func roundTrip(cc *http2.ClientConn, method string, u *url.URL, hdr http.Header, q []byte) error {
	req := &http.Request{Method: method, URL: u, Host: u.Host, Header: hdr}
	if method == "POST" {
		req.Body = io.NopCloser(bytes.NewReader(q))
		req.ContentLength = int64(len(q))
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf [64]byte
	n, err := io.ReadFull(resp.Body, buf[:])
	if err != io.ErrUnexpectedEOF && err != io.EOF {
		return fmt.Errorf("reading the answer: %v", err)
	}
	want := append([]byte(nil), q...)
	want[2] |= 0x80
	if resp.StatusCode != 200 || !bytes.Equal(buf[:n], want) {
		return fmt.Errorf("status %d answer %x, want 200 %x", resp.StatusCode, buf[:n], want)
	}
	return nil
}
