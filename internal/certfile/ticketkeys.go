package certfile

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// TicketKeyLen is the size of one session ticket key, as
// tls.Config.SetSessionTicketKeys takes it.
const TicketKeyLen = 32

// MaxTicketKeys bounds a ticket key file: every resumption may try each
// key, and one encrypting key plus a few older ones covers any roll.
const MaxTicketKeys = 16

// maxTicketFileBytes is far above MaxTicketKeys lines with comments; a
// larger file is not a key file.
const maxTicketFileBytes = 16 << 10

// ParseTicketKeys reads a ticket key file's contents: one key per line,
// 32 bytes written as 64 hex digits or as base64 (standard or URL
// alphabet, padding optional); blank lines and lines starting with # are
// skipped. The first key encrypts new tickets, every key decrypts. Errors
// name the line, never what is on it: the keys are secrets.
func ParseTicketKeys(data []byte) ([][TicketKeyLen]byte, error) {
	var keys [][TicketKeyLen]byte
	for i, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, ok := decodeTicketKey(string(line))
		if !ok {
			return nil, fmt.Errorf("line %d: want a %d-byte key as 64 hex digits or base64", i+1, TicketKeyLen)
		}
		if len(keys) == MaxTicketKeys {
			return nil, fmt.Errorf("line %d: more than %d keys", i+1, MaxTicketKeys)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

func decodeTicketKey(s string) (k [TicketKeyLen]byte, ok bool) {
	if len(s) == 2*TicketKeyLen {
		if n, err := hex.Decode(k[:], []byte(s)); err == nil && n == TicketKeyLen {
			return k, true
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == TicketKeyLen {
			copy(k[:], b)
			return k, true
		}
	}
	return k, false
}

// ReadTicketKeys reads and parses a ticket key file; an error names the
// file.
func ReadTicketKeys(path string) ([][TicketKeyLen]byte, error) {
	_, keys, err := readTicketKeys(path)
	return keys, err
}

func readTicketKeys(path string) (fileStamp, [][TicketKeyLen]byte, error) {
	st, err := stamp(path)
	if err != nil {
		return st, nil, fmt.Errorf("ticket_key_file: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return st, nil, fmt.Errorf("ticket_key_file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTicketFileBytes+1))
	if err != nil {
		return st, nil, fmt.Errorf("ticket_key_file %s: %w", path, err)
	}
	if len(data) > maxTicketFileBytes {
		return st, nil, fmt.Errorf("ticket_key_file %s: larger than %d bytes", path, maxTicketFileBytes)
	}
	keys, err := ParseTicketKeys(data)
	if err != nil {
		return st, nil, fmt.Errorf("ticket_key_file %s: %w", path, err)
	}
	return st, keys, nil
}

// TicketKeys holds the session ticket keys read from a file and reloads
// them, as Store does a certificate: a changed file is looked at, at most
// once per CheckInterval, when Refresh is called (at a handshake); a file
// that fails to parse keeps the old keys, and is logged once.
type TicketKeys struct {
	log  *slog.Logger
	path string
	cur  atomic.Pointer[[][TicketKeyLen]byte]

	mu       sync.Mutex
	checked  time.Time
	loaded   fileStamp
	rejected fileStamp
}

// NewTicketKeys loads the file; it must parse now.
func NewTicketKeys(path string, log *slog.Logger) (*TicketKeys, error) {
	if log == nil {
		log = slog.Default()
	}
	st, keys, err := readTicketKeys(path)
	if err != nil {
		return nil, err
	}
	k := &TicketKeys{log: log, path: path, loaded: st, checked: time.Now()}
	k.cur.Store(&keys)
	return k, nil
}

// Keys returns the keys in use, the encrypting one first.
func (k *TicketKeys) Keys() [][TicketKeyLen]byte { return *k.cur.Load() }

// Refresh looks at the file when CheckInterval has passed since the last
// look. changed says new keys are in use; rejected says the file changed
// and did not parse (reported once per bad version of the file), so the
// old keys stay.
func (k *TicketKeys) Refresh() (changed, rejected bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.checked) < CheckInterval {
		return false, false
	}
	k.checked = time.Now()
	now, err := stamp(k.path)
	if err == nil && (now == k.loaded || now == k.rejected) {
		return false, false
	}
	st, keys, err := readTicketKeys(k.path)
	if err != nil {
		if st == k.rejected {
			return false, false
		}
		k.rejected = st
		k.log.Warn("tls ticket keys not reloaded; the old ones stay in use", "file", k.path, "reason", err)
		return false, true
	}
	k.cur.Store(&keys)
	k.loaded, k.rejected = st, fileStamp{}
	k.log.Info("tls ticket keys reloaded", "file", k.path, "keys", len(keys))
	return true, false
}
