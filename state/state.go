// Package state is anyfront's runtime state store: pools, backends with their
// health and admin state, on hashicorp/go-memdb. It is the one place runtime
// state lives; components write to it and watch it, and never call each other.
package state

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/anyfront/anyfront/config"
)

// Health is what health checks last concluded about a backend.
type Health string

// Health values.
const (
	HealthUp   Health = "up"
	HealthDown Health = "down"
)

// Admin is what an operator asked of a backend.
type Admin string

// Admin values: auto follows health; up and down override it; drain sends no
// new queries but lets in-flight ones finish.
const (
	AdminAuto  Admin = "auto"
	AdminUp    Admin = "up"
	AdminDown  Admin = "down"
	AdminDrain Admin = "drain"
)

// ErrNotFound is returned for an unknown backend or pool name.
var ErrNotFound = errors.New("not found")

// Pool is a pool's row. Rows are never modified after insertion.
type Pool struct {
	Name   string
	Policy string
	Order  int // position in the config file
}

// Backend is a backend's row. Rows are never modified after insertion: to
// change one, copy it, change the copy and insert the copy.
type Backend struct {
	Name    string
	Pool    string
	Address string // netip.AddrPort text, the table's secondary key
	Weight  int
	Order   int
	Health  Health
	// Checked is set once a health check has given a verdict: before
	// that Health is the optimistic default (BGP waits for it).
	Checked bool
	// Reason says why Health last changed, for the API and logs.
	Reason  string
	Changed time.Time
	Admin   Admin
}

// Usable reports whether new queries may go to the backend.
func (b *Backend) Usable() bool {
	switch b.Admin {
	case AdminUp:
		return true
	case AdminAuto:
		return b.Health == HealthUp
	}
	return false
}

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		"pools": {
			Name: "pools",
			Indexes: map[string]*memdb.IndexSchema{
				"id": {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			},
		},
		"backends": {
			Name: "backends",
			Indexes: map[string]*memdb.IndexSchema{
				"id":   {Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
				"pool": {Name: "pool", Indexer: &memdb.StringFieldIndex{Field: "Pool"}},
			},
		},
		"node": nodeTable(),
	}}
}

// Store wraps the database with typed accessors.
type Store struct {
	db *memdb.MemDB
}

// New returns an empty store.
func New() (*Store, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state schema: %w", err)
	}
	return &Store{db: db}, nil
}

// ApplyConfig makes the pools and backends match cfg. A backend that keeps its
// name, pool and address keeps its health and admin state, so a reload does
// not send traffic to a backend known to be down or drained; new backends
// start up (optimistic) until a health check says otherwise.
func (s *Store) ApplyConfig(cfg *config.Config) error {
	txn := s.db.Txn(true)
	defer txn.Abort()
	now := time.Now()

	keepPool := map[string]bool{}
	keepBackend := map[string]bool{}
	for i, name := range cfg.PoolNames {
		pc := cfg.Pools[name]
		keepPool[name] = true
		if err := txn.Insert("pools", &Pool{Name: name, Policy: pc.Policy, Order: i}); err != nil {
			return err
		}
		for _, bc := range pc.Backends {
			keepBackend[bc.Name] = true
			nb := &Backend{
				Name: bc.Name, Pool: name, Address: bc.Address.String(),
				Weight: bc.Weight, Order: bc.Order,
				Health: HealthUp, Reason: "configured", Changed: now, Admin: AdminAuto,
			}
			raw, err := txn.First("backends", "id", bc.Name)
			if err != nil {
				return err
			}
			if old, ok := raw.(*Backend); ok && old.Pool == nb.Pool && old.Address == nb.Address {
				if old.Weight == nb.Weight && old.Order == nb.Order {
					continue // unchanged: no write, no wake-up
				}
				nb.Health, nb.Checked, nb.Reason, nb.Changed, nb.Admin = old.Health, old.Checked, old.Reason, old.Changed, old.Admin
			}
			if err := txn.Insert("backends", nb); err != nil {
				return err
			}
		}
	}
	if err := deleteMissing(txn, "pools", func(o any) bool { return keepPool[o.(*Pool).Name] }); err != nil {
		return err
	}
	if err := deleteMissing(txn, "backends", func(o any) bool { return keepBackend[o.(*Backend).Name] }); err != nil {
		return err
	}
	txn.Commit()
	return nil
}

func deleteMissing(txn *memdb.Txn, table string, keep func(any) bool) error {
	it, err := txn.Get(table, "id")
	if err != nil {
		return err
	}
	var drop []any
	for o := it.Next(); o != nil; o = it.Next() {
		if !keep(o) {
			drop = append(drop, o)
		}
	}
	for _, o := range drop {
		if err := txn.Delete(table, o); err != nil {
			return err
		}
	}
	return nil
}

// Pools lists the pools in config order, adding the table to ws when ws is
// not nil.
func (s *Store) Pools(ws memdb.WatchSet) ([]*Pool, error) {
	txn := s.db.Txn(false)
	it, err := txn.Get("pools", "id")
	if err != nil {
		return nil, err
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*Pool
	for o := it.Next(); o != nil; o = it.Next() {
		out = append(out, o.(*Pool))
	}
	slices.SortFunc(out, func(a, b *Pool) int { return a.Order - b.Order })
	return out, nil
}

// Backends lists every backend, by pool then config order.
func (s *Store) Backends(ws memdb.WatchSet) ([]*Backend, error) {
	txn := s.db.Txn(false)
	it, err := txn.Get("backends", "id")
	if err != nil {
		return nil, err
	}
	if ws != nil {
		ws.Add(it.WatchCh())
	}
	var out []*Backend
	for o := it.Next(); o != nil; o = it.Next() {
		out = append(out, o.(*Backend))
	}
	slices.SortFunc(out, func(a, b *Backend) int {
		if c := strings.Compare(a.Pool, b.Pool); c != 0 {
			return c
		}
		return a.Order - b.Order
	})
	return out, nil
}

// Backend returns one backend by name.
func (s *Store) Backend(name string) (*Backend, error) {
	raw, err := s.db.Txn(false).First("backends", "id", name)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("backend %q: %w", name, ErrNotFound)
	}
	return raw.(*Backend), nil
}

// SetHealth records a health verdict. It writes only on a change (or the
// first verdict), so watchers wake only for transitions, and reports whether
// it changed anything.
func (s *Store) SetHealth(name string, h Health, reason string) (bool, error) {
	return s.update(name, func(b *Backend) bool {
		if b.Health == h && b.Checked {
			return false
		}
		if b.Health != h {
			b.Changed = time.Now()
		}
		b.Health, b.Reason, b.Checked = h, reason, true
		return true
	})
}

// SetAdmin records an operator's admin state for a backend.
func (s *Store) SetAdmin(name string, a Admin) (bool, error) {
	switch a {
	case AdminAuto, AdminUp, AdminDown, AdminDrain:
	default:
		return false, fmt.Errorf("admin state %q: want auto, up, down or drain", a)
	}
	return s.update(name, func(b *Backend) bool {
		if b.Admin == a {
			return false
		}
		b.Admin = a
		return true
	})
}

// SetWeight changes a backend's weight until the next config reload.
func (s *Store) SetWeight(name string, w int) (bool, error) {
	if w < 1 {
		return false, fmt.Errorf("weight %d: must be at least 1", w)
	}
	return s.update(name, func(b *Backend) bool {
		if b.Weight == w {
			return false
		}
		b.Weight = w
		return true
	})
}

func (s *Store) update(name string, change func(*Backend) bool) (bool, error) {
	txn := s.db.Txn(true)
	defer txn.Abort()
	raw, err := txn.First("backends", "id", name)
	if err != nil {
		return false, err
	}
	if raw == nil {
		return false, fmt.Errorf("backend %q: %w", name, ErrNotFound)
	}
	b := *raw.(*Backend) // go-memdb rows are shared: change a copy
	if !change(&b) {
		return false, nil
	}
	if err := txn.Insert("backends", &b); err != nil {
		return false, err
	}
	txn.Commit()
	return true, nil
}

// Watch calls fn with the current backends and pools now and after every
// change, until ctx is done. fn runs on the caller's goroutine.
func (s *Store) Watch(ctx context.Context, fn func(pools []*Pool, backends []*Backend)) error {
	for {
		ws := memdb.NewWatchSet()
		pools, err := s.Pools(ws)
		if err != nil {
			return err
		}
		backends, err := s.Backends(ws)
		if err != nil {
			return err
		}
		fn(pools, backends)
		if err := ws.WatchCtx(ctx); err != nil {
			return nil // ctx done
		}
	}
}
