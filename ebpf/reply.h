// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The answers anyfront's XDP program sends itself with XDP_TX (xdp.c
// includes this): the empty TC=1 answer to a rate-limited query, and an
// answer from the answer cache (answer.h finds it).

#ifndef ANYFRONT_REPLY_H
#define ANYFRONT_REPLY_H

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

// What reply did.
enum reply_result {
	REPLY_BROKEN = -1, // the frame was changed and then could not be finished
	REPLY_NONE = 0,    // the frame is untouched
	REPLY_SENT = 1,    // the frame is the answer, ready for XDP_TX
};

// reply turns the query into an answer sent back where it came from: the
// header and question (qend is question_end's result) followed, when a is
// set, by the sections of the answer from the cache in s->d; else the
// empty TC=1 answer, so that a real client behind a rate-limited prefix
// retries over TCP. Whatever followed the question (the client's OPT record, Ethernet
// padding) goes. Every reason to give up is checked before the frame is
// changed; REPLY_BROKEN is for bounds the verifier needs re-checked after
// the tail moved, which cannot fail.
static __always_inline int reply(struct xdp_md *ctx, struct pkt *p, __u32 qend, struct answer_scratch *s, int a)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 l3 = p->l3_off & 0x3f; // at most Ethernet and two VLAN tags
	__u32 iplen = p->family == FAMILY_V4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	__u32 seclen = a ? s->d.sections_len : 0;
	long flen = (long)end - (long)data;

	if (p->ip_opts || qend > DNS_HDR_LEN + MAX_NAME_LEN + 4 || seclen > MAX_SECTIONS)
		return REPLY_NONE;
	__u32 sumlen = sizeof(struct udphdr) + qend; // what the checksum loop reads
	__u32 udplen = sumlen + seclen;
	// Keep clang from folding the pointers into 32-bit arithmetic, which
	// the verifier rejects.
	asm volatile("" : "+r"(flen));
	long delta = (long)(l3 + iplen + udplen) - flen;

	// A TC answer never grows: growing it would make XDP an amplifier.
	if ((!a && delta > 0) || (delta && bpf_xdp_adjust_tail(ctx, delta)))
		return REPLY_NONE;
	if (a && seclen > 0 &&
	    bpf_xdp_store_bytes(ctx, l3 + iplen + sumlen, s->d.sections, seclen & (MAX_SECTIONS * 2 - 1)))
		return REPLY_BROKEN;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return REPLY_BROKEN;
	swap_bytes(eth->h_source, eth->h_dest, ETH_ALEN);

	__u64 sum = 0;
	struct udphdr *udp;
	if (p->family == FAMILY_V4) {
		struct iphdr *ip = data + l3;

		if ((void *)(ip + 1) > end)
			return REPLY_BROKEN;
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
			return REPLY_BROKEN;
		swap_bytes(ip6->saddr.in6_u.u6_addr8, ip6->daddr.in6_u.u6_addr8, 16);
		ip6->payload_len = bpf_htons(udplen);
		ip6->hop_limit = 64;
		__u32 *w = ip6->saddr.in6_u.u6_addr32;
		for (int i = 0; i < 8; i++)
			sum += w[i]; // saddr and daddr are adjacent
		udp = (void *)(ip6 + 1);
	}
	// Pseudo-header: the sum so far holds the addresses; add protocol and
	// length as network-order words (one's-complement sums are byte-order
	// independent as long as every word is read the same way).
	sum += bpf_htons(IPPROTO_UDP) + bpf_htons(udplen);

	__u8 *dns = (void *)(udp + 1);
	if ((void *)(dns + DNS_HDR_LEN) > end)
		return REPLY_BROKEN;
	__be16 port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	udp->len = bpf_htons(udplen);
	udp->check = 0;
	if (a) {
		dns[2] = (s->d.flags[0] & 0xfe) | (dns[2] & 0x01); // RD from the query
		dns[3] = s->d.flags[1];
		__builtin_memcpy(dns + 6, s->d.counts, 6);
	} else {
		dns[2] = (dns[2] & 0x01) | 0x82; // QR, TC; keep RD; opcode 0, AA 0
		dns[3] &= 0x10;                  // keep CD; RA, AD, Z, RCODE 0
		__builtin_memset(dns + 6, 0, 6); // no answer, authority or additional
	}

	// Sum the UDP header, DNS header and question (at most 8+12+255+4
	// bytes) from a zero-padded copy: bpf_csum_diff wants a multiple of
	// four bytes, and a loop over the packet costs the verifier dearly.
	// The sections' sum comes precomputed.
	for (int i = 0; i < CSUM_BUF / 8; i++)
		s->csum[i] = 0;
	if (bpf_xdp_load_bytes(ctx, l3 + iplen, s->csum, sumlen))
		return REPLY_BROKEN;
	sum = fold(sum);
	sum = fold((__u32)bpf_csum_diff(0, 0, (void *)s->csum, (sumlen + 3) & ~3U, sum));
	if (a && seclen > 0) {
		__u32 ss = *(__u16 *)s->d.sections_sum;
		// Sections that start at an odd offset pair their bytes the other
		// way round: their sum is the byte swap of the stored one (and
		// the pad byte above pairs with their first byte).
		if (sumlen & 1)
			ss = ((ss >> 8) | (ss << 8)) & 0xffff;
		sum += ss;
	}
	__u16 csum = ~fold(sum);
	udp->check = csum ? csum : 0xffff; // 0 means "no checksum" in UDP
	return REPLY_SENT;
}

#endif
