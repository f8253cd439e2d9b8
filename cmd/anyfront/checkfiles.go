package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/internal/certfile"
	"github.com/anyfront/anyfront/state"
)

// Limits the file checks share with the components that read the files
// for real (admin/auth.go, bgp/peer.go): a file the check passes must not
// be refused at start-up.
const (
	maxTokenFileBytes = 4 << 10
	maxPasswordBytes  = 80
)

// checkFiles opens every file cfg names (TLS pairs, token files, BGP
// password files, the state file) and reports each one that is missing,
// empty or wrong as a FILE:LINE error of the config. config stays pure;
// this is the I/O step that -check, start-up and reload all run, so that
// what -check passes also starts and reloads whole.
func checkFiles(cfg *config.Config) error {
	var list []config.Error
	add := func(line int, format string, args ...any) {
		list = append(list, config.Error{File: cfg.File, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	for i, l := range cfg.Listen {
		if l.TLS != nil {
			if msg := checkTLSPair(l.TLS); msg != "" {
				add(l.TLS.Line, "listen[%d].tls: %s", i, msg)
			}
			for j, p := range l.TLS.Certs {
				if msg := checkTLSPair(&config.TLS{Cert: p.Cert, Key: p.Key}); msg != "" {
					add(p.Line, "listen[%d].tls.certs[%d]: %s", i, j, msg)
				}
			}
			if f := l.TLS.TicketKeyFile; f != "" {
				if _, err := certfile.ReadTicketKeys(f); err != nil {
					add(l.TLS.Line, "listen[%d].tls.%v", i, err)
				}
			}
		}
	}
	if t := cfg.Admin.TLS; t != nil {
		if msg := checkTLSPair(t); msg != "" {
			add(t.Line, "admin.tls: %s", msg)
		}
	}
	if msg := checkTokenFile(cfg.Admin.TokenFile); msg != "" {
		add(cfg.Admin.TokenFileLine, "admin.token_file: %s", msg)
	}
	if msg := checkTokenFile(cfg.Admin.ReadTokenFile); msg != "" {
		add(cfg.Admin.ReadTokenFileLine, "admin.read_token_file: %s", msg)
	}
	if cfg.BGP != nil {
		for i, p := range cfg.BGP.Peers {
			if msg := checkPasswordFile(p.PasswordFile); msg != "" {
				add(p.Line, "bgp.peers[%d].password_file: %s", i, msg)
			}
		}
	}
	if msg := checkStateFile(cfg.Node.StateFile); msg != "" {
		add(cfg.Node.Line, "node.state_file: %s", msg)
	}
	if len(list) == 0 {
		return nil
	}
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
	return &config.Errors{List: list}
}

// checkTLSPair loads the pair as the listeners will; "" when it loads.
// The error names the files, never what is in them.
func checkTLSPair(t *config.TLS) string {
	for _, f := range []struct{ what, path string }{{"cert", t.Cert}, {"key", t.Key}} {
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Sprintf("%s %s: %s", f.what, f.path, fileErr(err))
		}
	}
	if _, err := tls.LoadX509KeyPair(t.Cert, t.Key); err != nil {
		return fmt.Sprintf("cert %s / key %s: %v", t.Cert, t.Key, err)
	}
	return ""
}

// checkTokenFile applies the admin API's rules to a bearer token file
// (admin.token_file, admin.read_token_file): one word, not empty, at most
// maxTokenFileBytes. "" for no file or a good one.
func checkTokenFile(path string) string {
	if path == "" {
		return ""
	}
	data, msg := readBounded(path, maxTokenFileBytes)
	if msg != "" {
		return msg
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case tok == "":
		return path + ": empty (an empty token would let an empty bearer through)"
	case strings.ContainsAny(tok, " \t\r\n"):
		return path + ": the token must be a single word"
	}
	return ""
}

// checkPasswordFile applies bgp/peer.go's rule: 1 to 80 bytes on one line.
func checkPasswordFile(path string) string {
	if path == "" {
		return ""
	}
	data, msg := readBounded(path, maxPasswordBytes+2)
	if msg != "" {
		return msg
	}
	pw := strings.TrimRight(string(data), "\r\n")
	if pw == "" || len(pw) > maxPasswordBytes || strings.ContainsAny(pw, "\r\n") {
		return fmt.Sprintf("%s: want 1 to %d bytes on one line", path, maxPasswordBytes)
	}
	return ""
}

func readBounded(path string, limit int) ([]byte, string) {
	f, err := os.Open(path)
	if err != nil {
		return nil, path + ": " + fileErr(err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, path + ": " + fileErr(err)
	}
	if len(data) > limit {
		return nil, fmt.Sprintf("%s: larger than %d bytes", path, limit)
	}
	return data, ""
}

// fileErr is err without the path os already put in front of it: the
// message names the file once.
func fileErr(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}

// checkStateFile: the state file, when it exists, must parse (a corrupt
// one would lose an operator's drain), and its directory must exist so
// that drains can be written.
func checkStateFile(path string) string {
	if path == "" {
		return ""
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil {
		return fmt.Sprintf("directory %s: %s", filepath.Dir(path), fileErr(err))
	} else if !fi.IsDir() {
		return fmt.Sprintf("%s is not a directory", filepath.Dir(path))
	}
	if _, err := state.ReadOperator(path); err != nil {
		return err.Error()
	}
	return ""
}
