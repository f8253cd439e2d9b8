// Package certfile serves a TLS certificate loaded from a PEM certificate
// file and a PEM key file, and reloads it without a restart: when the files
// change (noticed at a handshake, at most once per CheckInterval) and when
// the operator reloads. A pair that fails to load never replaces the one
// being served: the old certificate keeps serving and the failure is
// reported once.
//
// The DoT, DoH and DoQ listeners (proxy/dot.go) and the admin API share it.
package certfile

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// CheckInterval is how often, at most, a handshake looks at whether the
// files changed: a renewed certificate is served within a second, and a
// handshake flood does not become a stat flood.
const CheckInterval = time.Second

// Store holds the certificate being served. Its methods are safe for
// concurrent use.
type Store struct {
	log *slog.Logger
	cur atomic.Pointer[tls.Certificate]

	mu                sync.Mutex
	certFile, keyFile string
	checked           time.Time
	loaded            [2]fileStamp // of the pair being served
	rejected          [2]fileStamp // of the last pair that failed, not to warn twice
}

type fileStamp struct {
	mod  time.Time
	size int64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{fi.ModTime(), fi.Size()}, nil
}

// New loads the pair; an error names the files, never their contents.
func New(certFile, keyFile string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Store{log: log}
	stamps, cert, err := load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	s.certFile, s.keyFile = certFile, keyFile
	s.cur.Store(cert)
	s.loaded = stamps
	s.checked = time.Now()
	return s, nil
}

func load(certFile, keyFile string) ([2]fileStamp, *tls.Certificate, error) {
	var stamps [2]fileStamp
	var err error
	if stamps[0], err = stamp(certFile); err != nil {
		return stamps, nil, fmt.Errorf("tls cert: %w", err)
	}
	if stamps[1], err = stamp(keyFile); err != nil {
		return stamps, nil, fmt.Errorf("tls key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return stamps, nil, fmt.Errorf("tls cert %s / key %s: %w", certFile, keyFile, err)
	}
	return stamps, &cert, nil
}

// GetCertificate fits tls.Config.GetCertificate: it returns the current
// certificate, first picking up changed files when CheckInterval has passed
// since the last look.
func (s *Store) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.mu.Lock()
	if time.Since(s.checked) >= CheckInterval {
		s.checked = time.Now()
		s.refreshLocked()
	}
	s.mu.Unlock()
	return s.cur.Load(), nil
}

// Certificate returns the certificate being served.
func (s *Store) Certificate() *tls.Certificate { return s.cur.Load() }

// Reload loads the pair now, from these (possibly new) paths. On error the
// certificate and paths being served stay, and the error says why.
func (s *Store) Reload(certFile, keyFile string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	stamps, cert, err := load(certFile, keyFile)
	if err != nil {
		// The same broken files are not worth a second warning when a
		// handshake looks at them next.
		if certFile == s.certFile && keyFile == s.keyFile {
			s.rejected = stamps
		}
		return err
	}
	s.certFile, s.keyFile = certFile, keyFile
	s.cur.Store(cert)
	s.loaded = stamps
	s.rejected = [2]fileStamp{}
	s.checked = time.Now()
	return nil
}

// refreshLocked reloads when the files differ from both the pair served
// and the last pair rejected.
func (s *Store) refreshLocked() {
	c, err1 := stamp(s.certFile)
	k, err2 := stamp(s.keyFile)
	now := [2]fileStamp{c, k}
	if err1 == nil && err2 == nil && (now == s.loaded || now == s.rejected) {
		return
	}
	stamps, cert, err := load(s.certFile, s.keyFile)
	if err != nil {
		if stamps != s.rejected {
			s.log.Warn("tls certificate not reloaded; the old one keeps serving", "cert", s.certFile, "reason", err)
		}
		s.rejected = stamps
		return
	}
	s.cur.Store(cert)
	s.loaded = stamps
	s.rejected = [2]fileStamp{}
	s.log.Info("tls certificate reloaded", "cert", s.certFile)
}
