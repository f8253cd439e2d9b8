package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/go-memdb"
)

// persistVersion is the state file's format; a file of another version is
// refused rather than half understood.
const persistVersion = 1

// maxStateFileBytes bounds what ReadOperator reads: the file holds one
// word per backend, far below this even for thousands of backends.
const maxStateFileBytes = 1 << 20

// Operator is what an operator decided at run time and what must survive a
// restart (node.state_file): the node drain and every backend's admin
// state other than auto.
type Operator struct {
	Version     int              `json:"version"`
	NodeDrained bool             `json:"node_drained"`
	Backends    map[string]Admin `json:"backends,omitempty"`
}

// ErrCorruptStateFile marks a state file that exists but cannot be read
// as one: start-up refuses it instead of forgetting an operator's drain.
var ErrCorruptStateFile = errors.New("corrupt state file")

// ReadOperator reads a state file. A missing file is no decision yet: the
// zero Operator and no error.
func ReadOperator(path string) (Operator, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Operator{Version: persistVersion}, nil
	}
	if err != nil {
		return Operator{}, fmt.Errorf("state file %s: %w", path, err)
	}
	if len(data) > maxStateFileBytes {
		return Operator{}, fmt.Errorf("state file %s: %w: larger than %d bytes", path, ErrCorruptStateFile, maxStateFileBytes)
	}
	var op Operator
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&op); err != nil {
		return Operator{}, fmt.Errorf("state file %s: %w: %v", path, ErrCorruptStateFile, err)
	}
	if op.Version != persistVersion {
		return Operator{}, fmt.Errorf("state file %s: %w: version %d, want %d", path, ErrCorruptStateFile, op.Version, persistVersion)
	}
	for name, a := range op.Backends {
		switch a {
		case AdminUp, AdminDown, AdminDrain:
		default:
			return Operator{}, fmt.Errorf("state file %s: %w: backend %q: admin state %q", path, ErrCorruptStateFile, name, a)
		}
	}
	return op, nil
}

// WriteOperator replaces the state file atomically: a temporary file in the
// same directory, synced, renamed over the old one, the directory synced,
// so a crash leaves the old decision or the new one, never half a file.
func WriteOperator(path string, op Operator) error {
	op.Version = persistVersion
	data, err := json.MarshalIndent(op, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // makes the rename durable; not every filesystem can
		d.Close()
	}
	return nil
}

// Operator returns the current operator decisions, adding the node and
// backend tables to ws when ws is not nil.
func (s *Store) Operator(ws memdb.WatchSet) (Operator, error) {
	op := Operator{Version: persistVersion, NodeDrained: s.Node(ws).Drained}
	backends, err := s.Backends(ws)
	if err != nil {
		return op, err
	}
	for _, b := range backends {
		if b.Admin != AdminAuto && b.Admin != "" {
			if op.Backends == nil {
				op.Backends = map[string]Admin{}
			}
			op.Backends[b.Name] = b.Admin
		}
	}
	return op, nil
}

// RestoreOperator applies decisions read from a state file. Backends the
// config no longer has are skipped and returned, for the caller to log.
func (s *Store) RestoreOperator(op Operator) (unknown []string, err error) {
	if _, err := s.SetNodeDrained(op.NodeDrained); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(op.Backends))
	for name := range op.Backends {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if _, err := s.SetAdmin(name, op.Backends[name]); errors.Is(err, ErrNotFound) {
			unknown = append(unknown, name)
		} else if err != nil {
			return unknown, err
		}
	}
	return unknown, nil
}

// KeepOperator writes the operator decisions to path whenever they change,
// until ctx ends, and once more on the way out if a change arrived with
// the stop (a drain just before SIGTERM must still be kept). A failed write is logged and retried at the next change: the
// decision itself is already in force.
func (s *Store) KeepOperator(ctx context.Context, path string, log *slog.Logger) error {
	last, err := ReadOperator(path)
	if err != nil {
		return err
	}
	dirty := false
	for {
		ws := memdb.NewWatchSet()
		op, err := s.Operator(ws)
		if err != nil {
			return err
		}
		if dirty || op.NodeDrained != last.NodeDrained || !maps.Equal(op.Backends, last.Backends) {
			if err := WriteOperator(path, op); err != nil {
				log.Error("operator drains not saved; retrying at the next change", "err", err)
				dirty = true
			} else {
				last, dirty = op, false
			}
		}
		if err := ws.WatchCtx(ctx); err != nil {
			break // ctx done
		}
	}
	op, err := s.Operator(nil)
	if err != nil {
		return err
	}
	if dirty || op.NodeDrained != last.NodeDrained || !maps.Equal(op.Backends, last.Backends) {
		if err := WriteOperator(path, op); err != nil {
			log.Error("operator drains not saved", "err", err)
		}
	}
	return nil
}
