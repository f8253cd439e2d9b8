// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Types and maps of anyfront's XDP program (xdp.c). bpf2go turns the map
// keys and values into Go types (xdpVipKey, xdpSettings, ...) for the
// loader, which fills the maps.

#ifndef ANYFRONT_XDP_H
#define ANYFRONT_XDP_H

// Verdicts index the per-CPU counters; the Go side names them.
enum verdict {
	VERDICT_PASS,
	VERDICT_BLOCKED,
	VERDICT_RATELIMITED,
	VERDICT_MALFORMED,
	VERDICT_ANSWERED,
	VERDICT_MAX,
};

#define FAMILY_V4 4
#define FAMILY_V6 6

// Bounds on map sizes; the Go loader checks config against the same
// numbers (see maps.go and blocklist.go for why each is what it is).
#define MAX_VIPS 256
#define MAX_BLOCKS (128 * 1024)
#define MAX_BUCKETS (64 * 1024)

#define DNS_HDR_LEN 12
// A name is at most 255 bytes; every label but the root takes at least two,
// so walking a question never needs more than 128 steps.
#define MAX_NAME_LEN 255
#define MAX_LABELS 128

// Every address and port is kept as bytes in network order, so that the Go
// side fills them from netip without caring about host byte order.
struct vip_key {
	__u8 addr[16]; // IPv4 in the first four bytes, the rest zero
	__u8 port[2];
	__u8 family;
	__u8 pad;
};

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct bucket_key {
	__u32 family;
	__u8 addr[16]; // source masked to v4_prefix / v6_prefix
};

// bucket_val is a GCRA token bucket: tat is the theoretical arrival time of
// the next conforming query. One word of state makes the update a single
// compare-and-swap, which keeps concurrent CPUs within a query or so of
// the budget without a lock (LRU hashes cannot hold a bpf_spin_lock).
struct bucket_val {
	__u64 tat;
	__u64 over; // over-limit queries, for every-Nth TC answers
};

struct settings {
	__u64 interval_ns; // 1e9/qps; 0 disables the rate limit
	__u64 burst_ns;    // burst * interval_ns
	__u32 tc_slip;     // answer every Nth over-limit query with TC=1; 0: never
	__u8 v4_mask[4];
	__u8 v6_mask[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_VIPS);
	__type(key, struct vip_key);
	__type(value, __u8);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_BLOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u8);
} block_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_BLOCKS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, __u8);
} block_v6 SEC(".maps");

// An LRU hash: a spoofed flood from many prefixes evicts the least recently
// seen buckets instead of filling the table and exempting new sources.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_BUCKETS);
	__type(key, struct bucket_key);
	__type(value, struct bucket_val);
} buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct settings);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, VERDICT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

// pkt is what the parser learned about a UDP datagram to a VIP.
struct pkt {
	__u32 family;
	__u32 l3_off;  // frame offset of the IP header
	__u32 l4_off;  // frame offset of the UDP header
	__u32 dns_len; // UDP payload length, from the UDP header
	__u8 src[16];
	int ip_opts;   // IPv4 header with options: never answered (see tc_answer)
};

#endif
