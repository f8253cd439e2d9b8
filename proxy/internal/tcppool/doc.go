// Package tcppool keeps the TCP connections to one backend: a few shared,
// pipelined connections (answers matched to queries by ID), or, for a
// backend that wants PROXY protocol, one connection per client, bounded.
// A query is either exchanged (send and wait) or started (send now, wait
// on its channel), which is how a slow attempt is hedged without a
// goroutine per query.
//
// It knows connections and DNS's TCP framing only: no config, no health,
// no counters; retries across backends and timeouts are the core's.
package tcppool
