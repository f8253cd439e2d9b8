// Package birdlab runs BIRD 2 as the BGP peer of integration tests: it
// renders a router's configuration from options (neighbours, TCP-MD5,
// GTSM, ECMP into the kernel, graceful shutdown), starts bird in a
// namespace from testlab and stops it by PID, and reads what BIRD learned
// back through birdc (routes with their attributes, protocol and session
// state, import counters) and the kernel's TCP counters that explain a
// session that does not come up.
//
// It builds on testlab's core (namespaces, processes, Require*) and knows
// nothing of anyfront; the anycast lab and the bgp package's tests use it.
package birdlab
