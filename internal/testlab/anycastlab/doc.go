// Package anycastlab is the anycast lab of docs/lab.md: one BIRD router,
// N anyfront nodes announcing the same VIPs over BGP with their own
// unbound backends, and a client, each in a network namespace. It owns
// the lab's addressing plan, each node's generated config and process,
// the router's view of the routes, and the query stream a client sends
// through the VIPs to see which node answered (ECMP, drain, failover).
//
// It builds on testlab (namespaces, processes, unbound) and birdlab (the
// router); the end-to-end tests and `make lab` (cmd/lab) use it.
package anycastlab
