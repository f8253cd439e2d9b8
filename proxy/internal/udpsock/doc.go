// Package udpsock is the UDP path's kernel interface: blocking sockets read
// with recvmmsg(MSG_WAITFORONE) and written with sendmmsg in reusable
// batches, socket addresses kept in kernel form (Addr), the destination
// address of datagrams to wildcard listeners (IP_PKTINFO), and the ICMP
// errors of backend sockets (IP_RECVERR and the error queue).
//
// It knows sockets and nothing else: no DNS, no config, no counters; it
// never allocates per datagram. The proxy core owns the loops that use it.
package udpsock
