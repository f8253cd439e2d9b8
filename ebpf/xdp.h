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
	VERDICT_ANSWERED,  // answered from the answer cache
	VERDICT_TRUNCATED, // over the rate limit, answered with TC=1 (tc_slip)
	VERDICT_MAX,
};

#define FAMILY_V4 4
#define FAMILY_V6 6

// Bounds on map sizes; the Go loader checks config against the same
// numbers (see maps.go and blocklist.go for why each is what it is).
#define MAX_VIPS 256
#define MAX_BLOCKS (128 * 1024)
#define MAX_BUCKETS (64 * 1024)
#define MAX_ANSWERS (64 * 1024)
#define MAX_ACL (16 * 1024)
// Sections bigger than this are not worth the copy and checksum: such
// answers are rare among the hottest and stay with the proxy.
#define MAX_SECTIONS 512

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

// The answer cache. The Go side publishes the hottest answers of the
// proxy's cache (answers.go); the program serves them to the clients in
// the ACL until they expire.
#define ANSWER_EDNS 1 // the query has an OPT record (version 0, no options)
#define ANSWER_DO 2
#define ANSWER_CD 4

struct answer_key {
	__u64 hash; // name_hash of the lowercased wire name
	__u8 qtype[2];
	__u8 qclass[2];
	__u8 flags; // ANSWER_*
	__u8 pad[3];
};

struct answer_data {
	// The key again, and the whole name: a hash collision, or an element
	// the kernel recycled for another key while a CPU still held it, must
	// never serve a wrong answer.
	struct answer_key key;
	__u64 expires;  // bpf_ktime_get_ns() from which it is not served
	__u32 slot;     // its counter in answer_hits
	__u16 name_len;
	__u16 sections_len;
	__u8 flags[2];  // header bytes 2-3 (RD comes from the query)
	__u8 counts[6]; // ANCOUNT, NSCOUNT, ARCOUNT
	// One's-complement sum of the sections as big-endian words (odd
	// length padded with a zero byte), folded to 16 bits: the UDP checksum
	// then needs no pass over them.
	__u8 sections_sum[2];
	__u8 pad[6];
	__u8 name[MAX_NAME_LEN + 1]; // zero-padded
	__u8 sections[MAX_SECTIONS];
};

// The lock makes an update of an existing answer (the Go side rewrites
// TTLs every second) happen in place, and makes the program's copy of it
// whole: without it a CPU could read half an old and half a new answer.
struct answer_val {
	struct bpf_spin_lock lock;
	__u32 pad;
	struct answer_data d;
};

// Bytes reply checksums from a copy: UDP header, DNS header and the
// longest question, rounded up to whole words.
#define CSUM_BUF 280

// Per-CPU work space (too big for the 512-byte stack): the query's
// lowercased name, the copy of the answer taken under its lock, and the
// start of the reply for its checksum.
struct answer_scratch {
	__u64 name[(MAX_NAME_LEN + 1) / 8];
	__u64 csum[CSUM_BUF / 8];
	struct answer_data d;
};

// Not preallocated: most nodes publish a few thousand answers, and an
// element is freed only when the Go side deletes one, so that a deleted
// element is reused at the earliest at the next publish, long after any
// CPU that was reading it has finished.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ANSWERS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct answer_key);
	__type(value, struct answer_val);
} answers SEC(".maps");

// Queries answered per answer, indexed by answer_data.slot, per CPU so
// that a hot answer does not bounce a counter between CPUs.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_ANSWERS);
	__type(key, __u32);
	__type(value, __u64);
} answer_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct answer_scratch);
} answer_scratch SEC(".maps");

// Sources the answer cache may answer: the proxy's acl.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ACL);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v4_key);
	__type(value, __u8);
} acl_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ACL);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_v6_key);
	__type(value, __u8);
} acl_v6 SEC(".maps");

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
	int ip_opts;   // IPv4 header with options: never answered (see reply)
};

#endif
