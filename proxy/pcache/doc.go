// Package pcache is the proxy's packet cache: whole answers stored as wire
// bytes, keyed by what changes an answer (Key), answered with the client's
// ID, question, RD bit and cookie and every TTL aged, without unpacking or
// allocating. It owns the key (ECS scoping included), lookup, store, purge,
// CLOCK eviction, serve-stale, prefetch claims, its counters, and the
// per-second view of its hottest entries that the XDP answer publisher
// reads (Hottest, AddHits).
//
// It knows no socket, no backend and no rule, and never imports proxy:
// the core decides when to look up and store, and counts what a lookup was
// for. Answer, Store and the Key methods are called for every query: they
// are concrete methods (no interface on the per-packet path), a hit
// allocates nothing, and a full cache stores without allocating.
package pcache
