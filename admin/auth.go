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

// role is what a request's bearer token lets it do.
type role int

const (
	roleNone    role = iota // no token, or one that matches neither
	roleRead                // the read token: every GET
	roleOperate             // the operate token: everything
)

func (r role) String() string {
	switch r {
	case roleRead:
		return "read"
	case roleOperate:
		return "operate"
	}
	return "none"
}

// authenticator checks bearer tokens. It keeps only the tokens' SHA-256,
// so a token itself never sits in a struct a debug dump or a log line
// could reach.
type authenticator struct {
	// operate and read are nil when that token file is not configured.
	operate atomic.Pointer[[sha256.Size]byte]
	read    atomic.Pointer[[sha256.Size]byte]
}

func newAuthenticator(operatePath, readPath string) (*authenticator, error) {
	a := &authenticator{}
	if err := a.load(operatePath, readPath); err != nil {
		return nil, err
	}
	return a, nil
}

// load reads both token files; "" clears that token. A file that fails to
// load keeps its current token; the other one still loads.
func (a *authenticator) load(operatePath, readPath string) error {
	op, errOp := readTokenFile("admin.token_file", operatePath)
	rd, errRd := readTokenFile("admin.read_token_file", readPath)
	if errOp == nil && errRd == nil && op != nil && rd != nil && *op == *rd {
		// One secret in both roles would make the read token an operate
		// token: a copy-paste mistake, reported now.
		return errors.New("admin.read_token_file holds the same token as admin.token_file")
	}
	if errOp == nil {
		a.operate.Store(op)
	}
	if errRd == nil {
		a.read.Store(rd)
	}
	return errors.Join(errOp, errRd)
}

// readTokenFile returns the hash of the token in path; nil for "".
func readTokenFile(key, path string) (*[sha256.Size]byte, error) {
	if path == "" {
		return nil, nil
	}
	tok, err := readTokenRaw(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	sum := sha256.Sum256([]byte(tok))
	return &sum, nil
}

// readTokenRaw reads and checks the token in path.
func readTokenRaw(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxTokenFileBytes {
		return "", fmt.Errorf("%s: larger than %d bytes", path, maxTokenFileBytes)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		// An empty token would let an empty bearer through.
		return "", fmt.Errorf("%s: empty", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		// A bearer token is one header word; a file with two lines is a
		// mistake better reported now than as 401s later.
		return "", fmt.Errorf("%s: the token must be a single word", path)
	}
	return tok, nil
}

// configured reports whether any token is set: reads then need one too.
func (a *authenticator) configured() bool {
	return a.operate.Load() != nil || a.read.Load() != nil
}

// Errors a refused call answers with.
var (
	errNoToken   = errors.New("mutating calls are disabled: set admin.token_file in the config")
	errBadToken  = errors.New("missing or invalid bearer token")
	errReadOnly  = errors.New("the read token may not change anything: this call needs the operate token (admin.token_file)")
	errTopNoAuth = errors.New("client addresses are never served without a token: set admin.read_token_file or admin.token_file")
)

// roleOf returns the role of the request's bearer token. Both sides are
// hashed before the constant-time compares, and both tokens are always
// compared, so neither a token's bytes, its length nor which role it
// matched leak through timing.
func (a *authenticator) roleOf(r *http.Request) role {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return roleNone
	}
	return a.roleOfToken(strings.TrimSpace(tok))
}

// pageRoleOf is roleOf for the dashboard page, which a browser loads by
// navigating to it and so cannot send a bearer token: HTTP Basic with the
// token as the password (any user name) is taken too. Only for reading:
// credentials a browser caches and replays by itself must never change
// anything (a cross-site form could post with them).
func (a *authenticator) pageRoleOf(r *http.Request) role {
	if _, pass, ok := r.BasicAuth(); ok {
		return min(a.roleOfToken(pass), roleRead)
	}
	return a.roleOf(r)
}

func (a *authenticator) roleOfToken(tok string) role {
	got := sha256.Sum256([]byte(tok))
	var none [sha256.Size]byte
	op, rd := a.operate.Load(), a.read.Load()
	if op == nil {
		op = &none
	}
	if rd == nil {
		rd = &none
	}
	isOp := subtle.ConstantTimeCompare(got[:], op[:]) & b2i(a.operate.Load() != nil)
	isRd := subtle.ConstantTimeCompare(got[:], rd[:]) & b2i(a.read.Load() != nil)
	switch {
	case isOp == 1:
		return roleOperate
	case isRd == 1:
		return roleRead
	}
	return roleNone
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// unauthorized answers 401 with the challenge header.
func unauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="anyfront"`)
	writeError(w, http.StatusUnauthorized, errBadToken.Error())
}

// requireRead wraps a GET handler: once any token is configured it needs
// the read or the operate token (401 otherwise). Without tokens reads are
// open, as on a loopback-only admin listener.
func (s *Server) requireRead(h http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth.configured() && s.auth.roleOf(r) == roleNone {
			unauthorized(w)
			return
		}
		h.ServeHTTP(w, r)
	}
}

// requirePage guards the dashboard page: once any token is configured it
// needs the read or operate token, as a bearer token or as the password of
// HTTP Basic, which the 401's challenge makes a browser ask for.
func (s *Server) requirePage(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.auth.configured() && s.auth.pageRoleOf(r) == roleNone {
			w.Header().Set("WWW-Authenticate", `Basic realm="anyfront dashboard: any user, the read or operate token as password", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, errBadToken.Error())
			return
		}
		h(w, r)
	}
}

// requireReadAlways is requireRead for personal data (client addresses):
// with no token configured at all it is never served (403 saying why).
func (s *Server) requireReadAlways(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.auth.configured() {
			writeError(w, http.StatusForbidden, errTopNoAuth.Error())
			return
		}
		s.requireRead(h)(w, r)
	}
}

// requireToken wraps a mutating handler: only the operate token runs it.
// No or a wrong token gets 401, the read token 403, and 403 too when no
// operate token is configured; in each case before the handler runs, so
// the call changes nothing. Every attempt, refused or not, goes to the
// audit log (audit.go).
func (s *Server) requireToken(action string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		who := s.auth.roleOf(r)
		switch {
		case s.auth.operate.Load() == nil && who != roleNone:
			writeError(rec, http.StatusForbidden, errNoToken.Error())
		case who == roleOperate:
			h(rec, r)
		case who == roleRead:
			writeError(rec, http.StatusForbidden, errReadOnly.Error())
		case s.auth.operate.Load() == nil:
			writeError(rec, http.StatusForbidden, errNoToken.Error())
		default:
			unauthorized(rec)
		}
		s.audit(r, action, who, rec.code)
	}
}
