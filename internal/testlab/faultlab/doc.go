// Package faultlab puts real backends behind faults a test dials in while
// it runs: LossyFarm, unbound resolvers behind a veth whose far end drops
// a share of the packets with nftables (a lossy path); and Relay, a UDP
// and TCP forwarder that delays answers or drops queries (a slow or
// flapping backend). Loss and delay are counted so a test can check it got
// the fault it asked for.
//
// It builds on testlab's core (namespaces, unbound, free ports); the e2e
// fate tests and the bench's fault cells use it.
package faultlab
