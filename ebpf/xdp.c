//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// anyfront's XDP program: for UDP traffic to a configured VIP it drops
// blocklisted sources, malformed DNS messages (responses, TC=1 queries,
// datagrams too short for what they claim) and sources over their rate
// limit (optionally answering every Nth of those with TC=1 so that real
// clients retry over TCP), answers plain queries from the clients in the
// ACL whose answer the proxy published to the answer cache, counts every
// verdict, and passes the rest to the kernel and the proxy's sockets.
// Everything that is not UDP to a VIP (including fragments and IPv6 with
// extension headers) passes untouched.
//
// Regenerate the committed objects with `make generate` after any change;
// TestCommittedObjectsAreFresh fails until then.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xdp.h"
#include "reply.h"
#include "answer.h"

static __always_inline int count(__u32 v, int action)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &v);

	if (c)
		*c += 1; // per-CPU slot: no atomic needed
	return action;
}

// blocked says whether the source is in a blocklist. Dynamic blocks expire
// by the Go side deleting them, not by a time stored here: an expired
// longest match would hide a shorter, still active one.
static __always_inline int blocked(struct pkt *p)
{
	void *b;

	if (p->family == FAMILY_V4) {
		struct lpm_v4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->src, 4);
		b = bpf_map_lookup_elem(&block_v4, &k);
	} else {
		struct lpm_v6_key k = {.prefixlen = 128};

		__builtin_memcpy(k.addr, p->src, 16);
		b = bpf_map_lookup_elem(&block_v6, &k);
	}
	return b != 0;
}

// question_end returns the offset just past the question (from the start
// of the DNS header), or 0 when the question does not fit in the datagram
// (or uses a compression pointer, or a name over 255 bytes). The caller has
// checked that the header fits.
static __always_inline __u32 question_end(void *dns, void *end, __u32 dns_len)
{
	__u32 off = DNS_HDR_LEN;

	for (int i = 0; i < MAX_LABELS; i++) {
		if (off > DNS_HDR_LEN + MAX_NAME_LEN - 1 || off >= dns_len)
			return 0;
		__u8 *l = dns + (off & 0x1ff);
		if ((void *)(l + 1) > end)
			return 0;
		if (*l == 0) {
			off += 1 + 4; // root label, QTYPE, QCLASS
			return off <= dns_len ? off : 0;
		}
		if (*l & 0xc0) // compression pointer or reserved label type
			return 0;
		off += 1 + *l;
	}
	return 0;
}

// What dns_kind makes of a DNS message to a VIP.
enum dns_kind {
	DNS_MALFORMED, // dropped: not something any DNS server answers
	DNS_QUERY,     // a plain query: opcode QUERY, one question
	DNS_OTHER,     // a query the proxy answers itself (FORMERR or NOTIMP)
};

// dns_kind mirrors the proxy's checks (proxy/wire.go parseQuery), so that
// XDP drops only what the proxy would drop too. A response (QR=1) or a
// datagram shorter than a header is malformed. With QDCOUNT other than 1
// the proxy answers FORMERR (or NOTIMP, for another opcode) whatever
// follows the header, and with an opcode other than QUERY it answers
// NOTIMP once the question parses: RFC 8906 asks for those answers rather
// than silence, so such messages pass (DNS_OTHER). A query with TC=1 is
// DNS_OTHER too: the proxy forwards it to a backend, never answering it
// from a cache, so the XDP answer cache must not either. With QDCOUNT 1
// the question must fit; *qend is then set to the offset just past it.
static __always_inline int dns_kind(void *dns, void *end, __u32 dns_len, __u32 *qend)
{
	__u8 *h = dns;

	if ((void *)(h + DNS_HDR_LEN) > end || dns_len < DNS_HDR_LEN)
		return DNS_MALFORMED;
	if (h[2] & 0x80) // QR
		return DNS_MALFORMED;
	if (h[4] != 0 || h[5] != 1)
		return DNS_OTHER;
	*qend = question_end(dns, end, dns_len);
	if (!*qend)
		return DNS_MALFORMED;
	return (h[2] & 0x7a) ? DNS_OTHER : DNS_QUERY; // opcode (bits 3-6) or TC (0x02)
}

// over_limit charges one query to the source's bucket and says whether it
// exceeds the budget; *over is then the bucket's count of such queries.
static __always_inline int over_limit(struct pkt *p, struct settings *s, __u64 *over)
{
	struct bucket_key k = {.family = p->family};
	__u64 now = bpf_ktime_get_ns();
	struct bucket_val *b;

	if (p->family == FAMILY_V4) {
		for (int i = 0; i < 4; i++)
			k.addr[i] = p->src[i] & s->v4_mask[i];
	} else {
		for (int i = 0; i < 16; i++)
			k.addr[i] = p->src[i] & s->v6_mask[i];
	}
	b = bpf_map_lookup_elem(&buckets, &k);
	if (!b) {
		struct bucket_val nb = {.tat = now + s->interval_ns};

		// A concurrent insert by another CPU wins; this query is free.
		bpf_map_update_elem(&buckets, &k, &nb, BPF_NOEXIST);
		return 0;
	}
	__u64 old = b->tat;
	__u64 tat = (old > now ? old : now) + s->interval_ns;

	if (tat - now > s->burst_ns) {
		*over = __sync_add_and_fetch(&b->over, 1);
		return 1;
	}
	// Lost a race with another CPU: it moved tat on from a time at least
	// as late as ours, so adding our interval keeps the charge right.
	if (__sync_val_compare_and_swap(&b->tat, old, tat) != old)
		__sync_fetch_and_add(&b->tat, s->interval_ns);
	return 0;
}
static __always_inline int dns_verdict(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct answer_scratch *w;
	__u32 zero = 0, qend = 0;
	int a = 0;
	struct settings *s;
	__u64 over = 0;
	int kind;

	if (blocked(p))
		return count(VERDICT_BLOCKED, XDP_DROP);
	kind = dns_kind(data + (p->l4_off & 0xff) + sizeof(struct udphdr), end, p->dns_len, &qend);
	if (kind == DNS_MALFORMED)
		return count(VERDICT_MALFORMED, XDP_DROP);
	w = bpf_map_lookup_elem(&answer_scratch, &zero);
	if (!w) // cannot happen: a per-CPU array always has its element
		return count(VERDICT_PASS, XDP_PASS);
	// Queries the proxy answers FORMERR or NOTIMP cost it work too: they
	// are charged like any other, but never answered here: a TC=1 answer
	// echoes one question under opcode QUERY, which would misstate what
	// they asked. Answers from the cache are charged as well, so that a
	// cached name is no way around the budget.
	s = bpf_map_lookup_elem(&config, &zero);
	if (s && s->interval_ns && over_limit(p, s, &over)) {
		if (kind != DNS_QUERY || !s->tc_slip || over % s->tc_slip != 0)
			return count(VERDICT_RATELIMITED, XDP_DROP);
	} else {
		if (kind != DNS_QUERY)
			return count(VERDICT_PASS, XDP_PASS);
		if (!cache_lookup(ctx, p, qend, w))
			return count(VERDICT_PASS, XDP_PASS);
		a = 1;
	}
	// One call builds both answers (a 0: the TC one), so that the code
	// is inlined once.
	switch (reply(ctx, p, qend, w, a)) {
	case REPLY_SENT:
		if (!a)
			return count(VERDICT_TRUNCATED, XDP_TX);
		__u32 slot = w->d.slot;
		__u64 *hits = bpf_map_lookup_elem(&answer_hits, &slot);
		if (hits)
			*hits += 1; // per-CPU slot: no atomic needed
		return count(VERDICT_ANSWERED, XDP_TX);
	case REPLY_NONE:
		return a ? count(VERDICT_PASS, XDP_PASS) : count(VERDICT_RATELIMITED, XDP_DROP);
	default:
		return XDP_ABORTED; // cannot happen: see reply
	}
}

SEC("xdp")
int anyfront_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vip_key vk = {};
	struct pkt p = {};
	struct udphdr *udp;
	__u32 off = sizeof(*eth), avail;
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	proto = eth->h_proto;
	for (int i = 0; i < 2; i++) { // 802.1Q, or QinQ (802.1ad outer tag)
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = data + off;
		if ((void *)(vh + 1) > end)
			return XDP_PASS;
		proto = vh->proto;
		off += sizeof(*vh);
	}
	p.l3_off = off;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > end)
			return XDP_PASS;
		// Fragments pass: only the first holds the UDP header, and the
		// kernel reassembles them for the proxy's socket.
		if (ip->version != 4 || ip->ihl < 5 || ip->protocol != IPPROTO_UDP ||
		    (ip->frag_off & bpf_htons(0x3fff)))
			return XDP_PASS;
		__u32 hl = ip->ihl * 4;
		udp = (void *)ip + hl;
		if ((void *)(udp + 1) > end)
			return XDP_PASS;
		p.family = vk.family = FAMILY_V4;
		p.ip_opts = hl > sizeof(*ip);
		__builtin_memcpy(p.src, &ip->saddr, 4);
		__builtin_memcpy(vk.addr, &ip->daddr, 4);
		p.l4_off = off + hl;
		avail = bpf_ntohs(ip->tot_len);
		avail = avail > hl ? avail - hl : 0;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > end)
			return XDP_PASS;
		// Extension headers (fragments among them) pass to the kernel.
		if (ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return XDP_PASS;
		p.family = vk.family = FAMILY_V6;
		__builtin_memcpy(p.src, &ip6->saddr, 16);
		__builtin_memcpy(vk.addr, &ip6->daddr, 16);
		p.l4_off = off + sizeof(*ip6);
		avail = bpf_ntohs(ip6->payload_len);
	} else {
		return XDP_PASS;
	}

	__builtin_memcpy(vk.port, &udp->dest, 2);
	if (!bpf_map_lookup_elem(&vips, &vk))
		return XDP_PASS;

	// From here on the datagram is for us: lengths that disagree with the
	// frame are malformed, not someone else's business.
	__u32 ulen = bpf_ntohs(udp->len);
	if (ulen < sizeof(*udp) || ulen > avail || (void *)udp + ulen > end)
		return count(VERDICT_MALFORMED, XDP_DROP);
	p.dns_len = ulen - sizeof(*udp);
	return dns_verdict(ctx, &p);
}

char __license[] SEC("license") = "Dual BSD/GPL";
