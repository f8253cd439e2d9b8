// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The TC=1 answer of anyfront's XDP program (xdp.c includes this).

#ifndef ANYFRONT_TC_H
#define ANYFRONT_TC_H

static __always_inline __u32 fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

static __always_inline void swap_bytes(__u8 *a, __u8 *b, int n)
{
	for (int i = 0; i < n; i++) {
		__u8 t = a[i];

		a[i] = b[i];
		b[i] = t;
	}
}

// tc_answer turns the query into a header-plus-question answer with QR=1
// and TC=1 sent back where it came from, so that a real client behind a
// rate-limited prefix retries over TCP. qend is question_end's result.
static __always_inline int tc_answer(struct xdp_md *ctx, struct pkt *p, __u32 qend)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off & 0x3f; // at most Ethernet and two VLAN tags
	__u32 iplen = p->family == FAMILY_V4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	__u32 udplen = sizeof(struct udphdr) + qend;
	long flen = (long)end - (long)data;

	// Keep clang from folding the pointers into 32-bit arithmetic, which
	// the verifier rejects.
	asm volatile("" : "+r"(flen));
	long delta = (long)(l3 + iplen + udplen) - flen;

	if (p->ip_opts || qend > DNS_HDR_LEN + MAX_NAME_LEN + 4)
		return 0;
	// Drop the additional records (and Ethernet padding): the answer is the
	// header and question only.
	if (delta > 0 || (delta < 0 && bpf_xdp_adjust_tail(ctx, delta)))
		return 0;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return 0;
	swap_bytes(eth->h_source, eth->h_dest, ETH_ALEN);

	__u64 sum = 0;
	struct udphdr *udp;
	if (p->family == FAMILY_V4) {
		struct iphdr *ip = data + l3;

		if ((void *)(ip + 1) > end)
			return 0;
		swap_bytes((__u8 *)&ip->saddr, (__u8 *)&ip->daddr, 4);
		ip->tot_len = bpf_htons(iplen + udplen);
		ip->ttl = 64;
		ip->frag_off = 0;
		ip->check = 0;
		__u16 *w = (__u16 *)ip;
		for (int i = 0; i < 10; i++)
			sum += w[i];
		ip->check = ~fold(sum);
		sum = (__u32)ip->saddr + (__u32)ip->daddr;
		udp = (void *)(ip + 1);
	} else {
		struct ipv6hdr *ip6 = data + l3;

		if ((void *)(ip6 + 1) > end)
			return 0;
		swap_bytes(ip6->saddr.in6_u.u6_addr8, ip6->daddr.in6_u.u6_addr8, 16);
		ip6->payload_len = bpf_htons(udplen);
		ip6->hop_limit = 64;
		__u32 *a = ip6->saddr.in6_u.u6_addr32;
		for (int i = 0; i < 8; i++)
			sum += a[i]; // saddr and daddr are adjacent
		udp = (void *)(ip6 + 1);
	}
	// Pseudo-header: the sum so far holds the addresses; add protocol and
	// length as network-order words (one's-complement sums are byte-order
	// independent as long as every word is read the same way).
	sum += bpf_htons(IPPROTO_UDP) + bpf_htons(udplen);

	__u8 *dns = (void *)(udp + 1);
	if ((void *)(dns + DNS_HDR_LEN) > end)
		return 0;
	__be16 port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->len = bpf_htons(udplen);
	udp->check = 0;
	dns[2] = (dns[2] & 0x01) | 0x82; // QR, TC; keep RD; opcode 0, AA 0
	dns[3] &= 0x10;                  // keep CD; RA, AD, Z, RCODE 0
	__builtin_memset(dns + 6, 0, 6); // no answer, authority or additional

	// Sum the UDP header and payload, at most 8+12+255+4 bytes.
	__u8 *b = (void *)udp;
	for (int i = 0; i < (DNS_HDR_LEN + MAX_NAME_LEN + 4 + 8 + 1) / 2; i++) {
		__u32 o = i * 2;
		if (o >= udplen)
			break;
		if ((void *)(b + o + 2) <= end) {
			sum += *(__u16 *)(b + o);
		} else {
			if ((void *)(b + o + 1) > end)
				return 0;
			__u8 last[2] = {b[o], 0}; // odd length: pad with a zero byte
			sum += *(__u16 *)last;
		}
	}
	__u16 csum = ~fold(sum);
	udp->check = csum ? csum : 0xffff; // 0 means "no checksum" in UDP
	return 1;
}

#endif
