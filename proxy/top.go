package proxy

import (
	"bytes"
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyfront/anyfront/proxy/dnswire"

	"github.com/miekg/dns"

	"github.com/anyfront/anyfront/config"
)

// Bounds of the top clients and names.
const (
	// topBucket is the step the one-minute window slides by; topBuckets of
	// them make the window.
	topBucket  = 10 * time.Second
	topBuckets = 6
	// topCapacity is how many clients and how many names each bucket
	// counts (space-saving): past that many, a newcomer takes over the
	// smallest counter and inherits its count, so anything that really is
	// among the busiest is kept, with an overestimate at most that count.
	topCapacity = 256
	// topQueue holds sampled queries until the aggregator takes them, ten
	// times a second: at 1 in 8, room for 320k queries/s.
	topQueue      = 4096
	topDrainEvery = 100 * time.Millisecond
	// TopMax bounds how many entries Top lists.
	TopMax = 100
)

// topTable counts queries by client and by name over the last minute. The
// query path samples one query in N with the runtime's per-thread random
// source (no lock, nothing shared) and hands it to a bounded ring; one
// goroutine folds the ring into per-bucket space-saving counters, so the
// memory is fixed however many clients and names there are.
type topTable struct {
	sample  atomic.Uint32 // 0: off
	q       *ring[topSample]
	dropped atomic.Uint64 // the ring was full

	mu      sync.Mutex // guards buckets: the aggregator and readers
	buckets [topBuckets]topCounts
}

type topSample struct {
	client netip.Addr
	weight uint32 // the sample rate: each sample stands for that many queries
	nlen   uint8
	name   [dnswire.MaxNameLen]byte
}

// topCounts is one bucket's counters; start is its first second.
type topCounts struct {
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

func newTopTable(c config.Top) *topTable {
	if c.Sample <= 0 {
		return nil
	}
	t := &topTable{q: newRing[topSample](topQueue, nil)}
	t.sample.Store(uint32(c.Sample))
	for i := range t.buckets {
		t.buckets[i] = topCounts{start: -1, clients: newSpaceSaving[netip.Addr](topCapacity), names: newSpaceSaving[nameKey](topCapacity)}
	}
	return t
}

// observe counts a query for name (lowercase wire format) from client, if
// it is sampled. Nil-safe: a nil table is off.
func (t *topTable) observe(client netip.Addr, name []byte) {
	if t != nil {
		t.add(client, name)
	}
}

func (t *topTable) add(client netip.Addr, name []byte) {
	n := t.sample.Load()
	if n == 0 || n > 1 && rand.Uint32N(n) != 0 {
		return
	}
	s, pos, ok := t.q.reserve()
	if !ok {
		t.dropped.Add(1)
		return
	}
	s.client, s.weight = client.Unmap(), n
	s.nlen = uint8(copy(s.name[:], name))
	t.q.publish(pos)
}

// run folds the ring into the buckets until stop closes.
func (t *topTable) run(stop <-chan struct{}) {
	tk := time.NewTicker(topDrainEvery)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-tk.C:
			t.drain(now)
		}
	}
}

func (t *topTable) drain(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.bucket(now)
	for s := t.q.next(); s != nil; s = t.q.next() {
		var k nameKey
		copy(k[:], s.name[:s.nlen])
		b.clients.add(s.client, uint64(s.weight))
		b.names.add(k, uint64(s.weight))
		t.q.release()
	}
}

// bucket returns the bucket for now, emptied if it last counted an older
// stretch of time. Called with mu held.
func (t *topTable) bucket(now time.Time) *topCounts {
	start := now.Unix() / int64(topBucket/time.Second)
	b := &t.buckets[start%topBuckets]
	if b.start != start {
		b.start = start
		b.clients.reset()
		b.names.reset()
	}
	return b
}

// TopList is GET /api/v1/top: the busiest clients and query names over the
// last minute. Counts are estimates when Sample is above 1 (each sampled
// query counts Sample times).
type TopList struct {
	Enabled       bool        `json:"enabled"`
	Sample        int         `json:"sample"`
	WindowSeconds int         `json:"window_seconds"`
	Clients       []TopClient `json:"clients"`
	Names         []TopName   `json:"names"`
	// Dropped counts sampled queries the aggregator had no room for.
	Dropped uint64 `json:"dropped"`
}

// TopClient is one client address and its queries.
type TopClient struct {
	Client  string `json:"client"`
	Queries uint64 `json:"queries"`
}

// TopName is one query name and its queries.
type TopName struct {
	Name    string `json:"name"`
	Queries uint64 `json:"queries"`
}

// Top lists the n busiest clients and names (at most TopMax) over the last
// minute, busiest first.
func (p *Proxy) Top(n int) TopList {
	out := TopList{WindowSeconds: int(topBuckets * topBucket / time.Second), Clients: []TopClient{}, Names: []TopName{}}
	t := p.top
	if t == nil {
		return out
	}
	n = min(max(n, 1), TopMax)
	out.Sample, out.Dropped = int(t.sample.Load()), t.dropped.Load()
	out.Enabled = out.Sample > 0 // a reload may have turned it off
	clients, names := map[netip.Addr]uint64{}, map[nameKey]uint64{}
	t.mu.Lock()
	oldest := time.Now().Unix()/int64(topBucket/time.Second) - topBuckets + 1
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
		out.Clients = append(out.Clients, TopClient{Client: e.key.String(), Queries: e.count})
	}
	for _, e := range topOf(names, n, func(a, b nameKey) int { return bytes.Compare(a[:], b[:]) }) {
		out.Names = append(out.Names, TopName{Name: e.key.String(), Queries: e.count})
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
