package pcache

// Stats are a cache's event counts since it was made.
type Stats struct {
	Hits, Misses, Stale, Stores, Evictions, Prefetches uint64
}

// Stats returns the counts so far. Stores and evictions are counted by the
// cache; hits, misses, stale answers and prefetches by the caller, which
// alone knows what a lookup was for (CountHit and friends).
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(),
		Stores: c.stores.Load(), Evictions: c.evictions.Load(), Prefetches: c.prefetches.Load(),
	}
}

// CountHit counts a query answered from the cache.
func (c *Cache) CountHit() { c.hits.Add(1) }

// CountMiss counts a query the cache could not answer.
func (c *Cache) CountMiss() { c.misses.Add(1) }

// CountStale counts an answer served stale (or from the cache when no
// backend could answer).
func (c *Cache) CountStale() { c.stale.Add(1) }

// CountPrefetch counts a hit sent on to a backend as a refresh.
func (c *Cache) CountPrefetch() { c.prefetches.Add(1) }
