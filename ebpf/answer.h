// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The answer cache lookup of anyfront's XDP program (xdp.c includes this;
// reply.h sends what it finds). The Go side (answers.go) mirrors the key
// and the name hash: keep them in step.

#ifndef ANYFRONT_ANSWER_H
#define ANYFRONT_ANSWER_H

// lower8 lowercases the ASCII letters among eight bytes at once (label
// lengths, at most 63, are never letters). Every byte's low seven bits
// plus a constant carry into its top bit when the byte is at least 'A',
// or more than 'Z'; bytes with the top bit set are not ASCII.
static __always_inline __u64 lower8(__u64 x)
{
	__u64 low = x & 0x7f7f7f7f7f7f7f7fULL;
	__u64 ge_a = low + 0x3f3f3f3f3f3f3f3fULL; // 'A' + 0x3f = 0x80
	__u64 gt_z = low + 0x2525252525252525ULL; // 'Z' + 1 + 0x25 = 0x80
	__u64 upper = ge_a & ~gt_z & ~x & 0x8080808080808080ULL;

	return x | (upper >> 2); // 0x80 >> 2 is the case bit 0x20
}

// in_acl says whether the source may be answered from the cache.
static __always_inline int in_acl(struct pkt *p)
{
	if (p->family == FAMILY_V4) {
		struct lpm_v4_key k = {.prefixlen = 32};

		__builtin_memcpy(k.addr, p->src, 4);
		return bpf_map_lookup_elem(&acl_v4, &k) != 0;
	}
	struct lpm_v6_key k = {.prefixlen = 128};

	__builtin_memcpy(k.addr, p->src, 16);
	return bpf_map_lookup_elem(&acl_v6, &k) != 0;
}

// cache_lookup finds the answer for a plain query (DNS_QUERY; qend is
// question_end's result) and copies it to s->d; it returns 1 when that
// answer may be served: the query has no answer, authority or additional
// records but at most an OPT record of EDNS version 0 without options,
// the answer is the one for this very name, type, class and flags, the
// source is in the ACL, it has not expired and it fits what the client
// accepts. Anything else is the proxy's to answer.
static __always_inline int cache_lookup(struct xdp_md *ctx, struct pkt *p, __u32 qend, struct answer_scratch *s)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 dns_off = (p->l4_off & 0xff) + sizeof(struct udphdr);
	__u8 *h = data + dns_off;
	__u32 name_len = qend - DNS_HDR_LEN - 4;
	struct answer_key k = {};
	__u32 limit = 512; // what a client without EDNS accepts (RFC 1035)

	if (p->ip_opts || (void *)(h + DNS_HDR_LEN) > end)
		return 0;
	if (h[6] | h[7] | h[8] | h[9] | h[10])
		return 0;
	if (h[3] & 0x10)
		k.flags |= ANSWER_CD;
	if (h[11] == 0) {
		if (p->dns_len != qend)
			return 0;
	} else if (h[11] == 1) {
		// The OPT record: root owner, TYPE 41, CLASS the payload size,
		// TTL extended RCODE, version and flags, RDLENGTH 0, and nothing
		// after it.
		__u8 *o = (void *)h + (qend & 0x1ff);

		if (p->dns_len != qend + 11 || (void *)(o + 11) > end)
			return 0;
		if (o[0] || o[1] || o[2] != 41 || o[5] || o[6] || o[9] || o[10])
			return 0;
		k.flags |= ANSWER_EDNS;
		if (o[7] & 0x80)
			k.flags |= ANSWER_DO;
		__u32 payload = ((__u32)o[3] << 8) | o[4];
		if (payload > limit)
			limit = payload;
	} else {
		return 0;
	}
	if (name_len < 1 || name_len > MAX_NAME_LEN)
		return 0;
	__u8 *q = (void *)h + ((DNS_HDR_LEN + name_len) & 0x1ff);
	if ((void *)(q + 4) > end)
		return 0;
	__builtin_memcpy(k.qtype, q, 2);
	__builtin_memcpy(k.qclass, q + 2, 2);

	for (int i = 0; i < (MAX_NAME_LEN + 1) / 8; i++)
		s->name[i] = 0;
	if (bpf_xdp_load_bytes(ctx, dns_off + DNS_HDR_LEN, s->name, name_len))
		return 0;
	// nameHash in answers.go is the twin of this loop. It runs over all
	// 32 words, the zero padding included: a loop that stopped at the
	// name's end would leave the verifier 32 ways out of it to follow.
	__u64 hash = 0x616e7966726f6e74ULL ^ name_len;
	for (int i = 0; i < (MAX_NAME_LEN + 1) / 8; i++) {
		__u64 w = lower8(s->name[i]);

		s->name[i] = w;
		hash = (hash ^ w) * 0x9e3779b97f4a7c15ULL;
		hash ^= hash >> 31;
	}
	k.hash = hash;

	struct answer_val *v = bpf_map_lookup_elem(&answers, &k);
	if (!v || !in_acl(p))
		return 0;
	bpf_spin_lock(&v->lock);
	s->d = v->d;
	bpf_spin_unlock(&v->lock);

	__u64 *kw = (__u64 *)&k, *dk = (__u64 *)&s->d.key;
	if (kw[0] != dk[0] || kw[1] != dk[1] || s->d.name_len != name_len)
		return 0;
	__u64 *dn = (__u64 *)s->d.name, diff = 0;
	for (int i = 0; i < (MAX_NAME_LEN + 1) / 8; i++)
		diff |= dn[i] ^ s->name[i]; // both zero-padded
	if (diff)
		return 0;
	if (bpf_ktime_get_ns() >= s->d.expires)
		return 0;
	return s->d.sections_len <= MAX_SECTIONS && qend + s->d.sections_len <= limit;
}

#endif
