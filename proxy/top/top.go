// Package top counts the busiest clients and query names over the last
// minute, for GET /api/v1/top and the dashboard: the query path samples
// queries into a bounded ring, one goroutine (Table.Run, started and joined
// by the caller) folds them into fixed-size space-saving counters, and List
// reads them.
//
// A nil *Table is off: Observe, List and Collect return at their first
// line. Observe runs for every query: it never blocks and never allocates.
//
// It knows no listener and no proxy: it never imports proxy, and sees only
// the client address and the lowercase wire name it is given.
package top

import (
	"bytes"
	"cmp"
	"context"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
	"github.com/anyfront/anyfront/proxy/dnswire"
	"github.com/anyfront/anyfront/proxy/internal/ring"
)

// Bounds of the top clients and names.
const (
	// bucketStep is the step the one-minute window slides by; buckets of
	// them make the window.
	bucketStep = 10 * time.Second
	buckets    = 6
	// capacity is how many clients and how many names each bucket
	// counts (space-saving): past that many, a newcomer takes over the
	// smallest counter and inherits its count, so anything that really is
	// among the busiest is kept, with an overestimate at most that count.
	capacity = 256
	// queue holds sampled queries until the aggregator takes them, ten
	// times a second: at 1 in 8, room for 320k queries/s.
	queue      = 4096
	drainEvery = 100 * time.Millisecond
	// Max bounds how many entries List lists.
	Max = 100
)

// Table counts queries by client and by name over the last minute. The
// query path samples one query in N with the runtime's per-thread random
// source (no lock, nothing shared) and hands it to a bounded ring; one
// goroutine folds the ring into per-bucket space-saving counters, so the
// memory is fixed however many clients and names there are.
type Table struct {
	sample  atomic.Uint32 // 0: off
	q       *ring.Ring[sample]
	dropped atomic.Uint64 // the ring was full

	mu      sync.Mutex // guards buckets: the aggregator and readers
	buckets [buckets]counts
}

type sample struct {
	client netip.Addr
	weight uint32 // the sample rate: each sample stands for that many queries
	nlen   uint8
	name   [dnswire.MaxNameLen]byte
}

// counts is one bucket's counters; start is its first second.
type counts struct {
	start   int64
	clients *spaceSaving[netip.Addr]
	names   *spaceSaving[nameKey]
}

// nameKey is a lowercase wire-format name, zero-padded: a fixed-size key
// lets the aggregator count a name it already knows without allocating,
// and is still unambiguous (a wire name ends at its zero root label).
type nameKey [dnswire.MaxNameLen]byte

// String is the name in presentation format, escapes included.
func (k nameKey) String() string {
	if n, _, err := dns.UnpackDomainName(k[:], 0); err == nil {
		return n
	}
	return "."
}

// New prepares the tables c describes; they are nil (off) when c.Sample
// is 0. It starts nothing: Run does.
func New(c config.Top) *Table {
	if c.Sample <= 0 {
		return nil
	}
	t := &Table{q: ring.New[sample](queue, nil)}
	t.sample.Store(uint32(c.Sample))
	for i := range t.buckets {
		t.buckets[i] = counts{start: -1, clients: newSpaceSaving[netip.Addr](capacity), names: newSpaceSaving[nameKey](capacity)}
	}
	return t
}

// SetSample applies a reloaded top.sample: one query in n is counted from
// now on, none when n is 0. The tables themselves exist only if they were
// on at start.
func (t *Table) SetSample(n int) { t.sample.Store(uint32(max(n, 0))) }

// Observe counts a query for name (lowercase wire format) from client, if
// it is sampled. Nil-safe: a nil table is off.
func (t *Table) Observe(client netip.Addr, name []byte) {
	if t != nil {
		t.add(client, name)
	}
}

func (t *Table) add(client netip.Addr, name []byte) {
	n := t.sample.Load()
	if n == 0 || n > 1 && rand.Uint32N(n) != 0 {
		return
	}
	s, pos, ok := t.q.Reserve()
	if !ok {
		t.dropped.Add(1)
		return
	}
	s.client, s.weight = client.Unmap(), n
	s.nlen = uint8(copy(s.name[:], name))
	t.q.Publish(pos)
}

// Run folds the ring into the buckets until ctx ends, and returns then.
// The caller runs it on a goroutine it joins. Nil-safe: a nil table
// returns at once.
func (t *Table) Run(ctx context.Context) {
	if t == nil {
		return
	}
	tk := time.NewTicker(drainEvery)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tk.C:
			t.drain(now)
		}
	}
}

func (t *Table) drain(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucket(now)
	for s := t.q.Next(); s != nil; s = t.q.Next() {
		var k nameKey
		copy(k[:], s.name[:s.nlen])
		b.clients.add(s.client, uint64(s.weight))
		b.names.add(k, uint64(s.weight))
		t.q.Release()
	}
}

// bucket returns the bucket for now, emptied if it last counted an older
// stretch of time. Called with mu held.
func (t *Table) bucket(now time.Time) *counts {
	start := now.Unix() / int64(bucketStep/time.Second)
	b := &t.buckets[start%buckets]
	if b.start != start {
		b.start = start
		b.clients.reset()
		b.names.reset()
	}
	return b
}

// List is GET /api/v1/top: the busiest clients and query names over the
// last minute. Counts are estimates when Sample is above 1 (each sampled
// query counts Sample times). Its JSON is the admin API's contract
// (docs/admin-api.md).
type List struct {
	Enabled       bool     `json:"enabled"`
	Sample        int      `json:"sample"`
	WindowSeconds int      `json:"window_seconds"`
	Clients       []Client `json:"clients"`
	Names         []Name   `json:"names"`
	// Dropped counts sampled queries the aggregator had no room for.
	Dropped uint64 `json:"dropped"`
}

// Client is one client address and its queries.
type Client struct {
	Client  string `json:"client"`
	Queries uint64 `json:"queries"`
}

// Name is one query name and its queries.
type Name struct {
	Name    string `json:"name"`
	Queries uint64 `json:"queries"`
}

// List lists the n busiest clients and names (at most Max) over the last
// minute, busiest first. Nil-safe: a nil table lists nothing, and says it
// is off.
func (t *Table) List(n int) List {
	out := List{WindowSeconds: int(buckets * bucketStep / time.Second), Clients: []Client{}, Names: []Name{}}
	if t == nil {
		return out
	}
	n = min(max(n, 1), Max)
	out.Sample, out.Dropped = int(t.sample.Load()), t.dropped.Load()
	out.Enabled = out.Sample > 0 // a reload may have turned it off
	clients, names := map[netip.Addr]uint64{}, map[nameKey]uint64{}
	t.mu.Lock()
	oldest := time.Now().Unix()/int64(bucketStep/time.Second) - buckets + 1
	for i := range t.buckets {
		b := &t.buckets[i]
		if b.start < oldest {
			continue
		}
		b.clients.sumInto(clients)
		b.names.sumInto(names)
	}
	t.mu.Unlock()
	for _, e := range topOf(clients, n, netip.Addr.Compare) {
		out.Clients = append(out.Clients, Client{Client: e.key.String(), Queries: e.count})
	}
	for _, e := range topOf(names, n, func(a, b nameKey) int { return bytes.Compare(a[:], b[:]) }) {
		out.Names = append(out.Names, Name{Name: e.key.String(), Queries: e.count})
	}
	return out
}

// topOf returns the n largest counts, ties in key order so a listing is
// stable from one call to the next.
func topOf[K comparable](m map[K]uint64, n int, less func(a, b K) int) []ssEntry[K] {
	all := make([]ssEntry[K], 0, len(m))
	for k, c := range m {
		all = append(all, ssEntry[K]{k, c})
	}
	slices.SortFunc(all, func(a, b ssEntry[K]) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return less(a.key, b.key)
	})
	return all[:min(n, len(all))]
}
