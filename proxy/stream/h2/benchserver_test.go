package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The benchmark's servers: ours ("h2") and net/http's HTTP/2 server
// configured as proxy/stream/doh.go configures it ("nethttp"), both behind
// the same TLS certificate and answering like echo. By default each runs in
// a child process (this test binary again, TestBenchServerChild) so that its
// CPU and allocations are measured apart from the client's, which is the
// same code in both arms.

// childEnv names the server kind a child serves; its _CERT and _KEY
// variants name the certificate files.
const childEnv = "H2BENCH_CHILD"

// benchMaxStreams is both servers' stream limit: the product's default
// MaxInflightPerConn.
const benchMaxStreams = 100

// usage is a process's CPU and allocations so far.
type usage struct {
	cpu            time.Duration
	mallocs, bytes uint64
}

func selfUsage() usage {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), mallocs: ms.Mallocs, bytes: ms.TotalAlloc}
}

// benchEcho answers like echo without allocating: Respond copies the body.
type benchEcho struct{}

func (benchEcho) ServeDNS(r *Request) {
	var buf [512]byte
	ans := append(buf[:0], r.Query...)
	if len(ans) > 2 {
		ans[2] |= 0x80
	}
	r.Respond(200, ans, 300)
}

// netEcho is doh.go's ServeHTTP with the DNS core replaced by the echo.
type netEcho struct{}

func (netEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != DefaultPath {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	var msg []byte
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		q := r.URL.Query().Get("dns")
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(q, "="))
		if q == "" || err != nil {
			http.Error(w, "bad dns parameter", http.StatusBadRequest)
			return
		}
		msg = b
	case http.MethodPost:
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != MediaType {
			http.Error(w, "bad content type", http.StatusUnsupportedMediaType)
			return
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, DefaultMaxBody))
		if err != nil {
			http.Error(w, "body not read", http.StatusBadRequest)
			return
		}
		msg = b
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	resp := append([]byte(nil), msg...)
	if len(resp) > 2 {
		resp[2] |= 0x80
	}
	h := w.Header()
	h.Set("Content-Type", MediaType)
	h.Set("Content-Length", fmt.Sprint(len(resp)))
	h.Set("Cache-Control", "max-age=300")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(resp)
	}
}

// serveBench serves kind on loopback until ctx ends; wait returns once
// its connections are done.
func serveBench(ctx context.Context, kind string, kp tls.Certificate) (addr string, wait func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	var wg sync.WaitGroup
	switch kind {
	case "h2":
		srv, err := New(Config{MaxStreams: benchMaxStreams}, benchEcho{})
		if err != nil {
			ln.Close()
			return "", nil, err
		}
		tcfg := &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: []string{"h2"}}
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					tc := tls.Server(c, tcfg)
					if err := tc.HandshakeContext(ctx); err != nil {
						c.Close()
						return
					}
					_ = srv.ServeConn(ctx, tc)
				})
			}
		})
		context.AfterFunc(ctx, func() { ln.Close() })
	case "nethttp":
		// As doh.go's NewDoH sets it up, with the config's defaults.
		hs := &http.Server{
			Handler:           netEcho{},
			TLSConfig:         &tls.Config{Certificates: []tls.Certificate{kp}},
			ReadHeaderTimeout: DefaultReadHeaderTimeout,
			ReadTimeout:       DefaultIdleTimeout,
			WriteTimeout:      DefaultIdleTimeout + 5*time.Second,
			IdleTimeout:       DefaultIdleTimeout,
			MaxHeaderBytes:    DefaultMaxHeaderListSize,
			HTTP2: &http.HTTP2Config{
				MaxConcurrentStreams: benchMaxStreams,
				MaxReadFrameSize:     1 << 14,
			},
		}
		wg.Go(func() { _ = hs.ServeTLS(ln, "", "") })
		context.AfterFunc(ctx, func() { hs.Close() })
	default:
		ln.Close()
		return "", nil, fmt.Errorf("unknown server %q", kind)
	}
	return ln.Addr().String(), wg.Wait, nil
}

// TestBenchServerChild is a benchmark server when BenchmarkDoH starts this
// binary as one: it prints its address, then its usage for each line read
// on stdin, and stops at EOF.
func TestBenchServerChild(t *testing.T) {
	kind := os.Getenv(childEnv)
	if kind == "" {
		t.Skip("only run by BenchmarkDoH as its server process")
	}
	kp, err := tls.LoadX509KeyPair(os.Getenv(childEnv+"_CERT"), os.Getenv(childEnv+"_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := serveBench(ctx, kind, kp)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("addr %s\n", addr)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		u := selfUsage()
		fmt.Printf("usage %d %d %d\n", u.cpu, u.mallocs, u.bytes)
	}
	cancel()
	wait()
}

// benchServer is a running server: a child process, or in this process.
type benchServer struct {
	addr  string
	usage func() (usage, error)
	stop  func()
}

func startChild(kind, certFile, keyFile string) (*benchServer, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchServerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+kind, childEnv+"_CERT="+certFile, childEnv+"_KEY="+keyFile)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	out := bufio.NewReader(pipe)
	stop := func() {
		in.Close()
		_ = cmd.Wait()
	}
	var addr string
	line, err := out.ReadString('\n')
	if _, err2 := fmt.Sscanf(line, "addr %s", &addr); err != nil || err2 != nil {
		stop()
		return nil, fmt.Errorf("server child %s printed %q: %w", kind, line, errors.Join(err, err2))
	}
	return &benchServer{addr: addr, stop: stop, usage: func() (usage, error) {
		var u usage
		if _, err := io.WriteString(in, "u\n"); err != nil {
			return u, err
		}
		line, err := out.ReadString('\n')
		if err != nil {
			return u, err
		}
		var ns int64
		_, err = fmt.Sscanf(line, "usage %d %d %d", &ns, &u.mallocs, &u.bytes)
		u.cpu = time.Duration(ns)
		return u, err
	}}, nil
}

func startInProc(kind string, kp tls.Certificate) (*benchServer, error) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := serveBench(ctx, kind, kp)
	if err != nil {
		cancel()
		return nil, err
	}
	return &benchServer{addr: addr, stop: func() { cancel(); wait() },
		usage: func() (usage, error) { return selfUsage(), nil }}, nil
}
