package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// maxTokenFileBytes bounds how much of the token file is read: a token is a
// line of random text, and a path pointing at a device must fail fast.
const maxTokenFileBytes = 4 << 10

// authenticator checks bearer tokens on mutating calls. It keeps only the
// token's SHA-256, so the token itself never sits in a struct a debug dump
// or a log line could reach.
type authenticator struct {
	// token is nil when no token file is configured: mutating calls are
	// then refused outright.
	token atomic.Pointer[[sha256.Size]byte]
}

func newAuthenticator(path string) (*authenticator, error) {
	a := &authenticator{}
	if err := a.load(path); err != nil {
		return nil, err
	}
	return a, nil
}

// load reads the token file at path; "" clears the token. On error the
// current token stays.
func (a *authenticator) load(path string) error {
	if path == "" {
		a.token.Store(nil)
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("admin.token_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return fmt.Errorf("admin.token_file %s: %w", path, err)
	}
	if len(data) > maxTokenFileBytes {
		return fmt.Errorf("admin.token_file %s: larger than %d bytes", path, maxTokenFileBytes)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		// An empty token would let an empty bearer through.
		return fmt.Errorf("admin.token_file %s: empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		// A bearer token is one header word; a file with two lines is a
		// mistake better reported now than as 401s later.
		return fmt.Errorf("admin.token_file %s: the token must be a single word", path)
	}
	sum := sha256.Sum256([]byte(tok))
	a.token.Store(&sum)
	return nil
}

// errNoToken and errBadToken are the two ways a mutating call is refused.
var (
	errNoToken  = errors.New("mutating calls are disabled: set admin.token_file in the config")
	errBadToken = errors.New("missing or invalid bearer token")
)

// check verifies the request's Authorization header. Both sides are hashed
// before the constant-time compare so that neither the token's bytes nor
// its length leak through timing.
func (a *authenticator) check(r *http.Request) error {
	want := a.token.Load()
	if want == nil {
		return errNoToken
	}
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return errBadToken
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return errBadToken
	}
	return nil
}

// requireToken wraps a mutating handler: without a valid token it answers
// 401 (or 403 when no token is configured) before the handler runs, so the
// call changes nothing.
func (s *Server) requireToken(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch err := s.auth.check(r); err {
		case nil:
			h(w, r)
		case errNoToken:
			writeError(w, http.StatusForbidden, err.Error())
		default:
			s.log.Info("admin call refused: bad token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="anyfront"`)
			writeError(w, http.StatusUnauthorized, err.Error())
		}
	}
}
