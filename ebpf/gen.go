package ebpf

// The XDP program (xdp.c with xdp.h, answer.h and reply.h) is compiled with Debian's
// clang by `make generate` and the output committed (xdp_bpfel.o/.go for
// little-endian machines, xdp_bpfeb.o/.go for big-endian ones), so that
// building anyfront needs no C toolchain. The second step records the
// hashes of the sources and objects in xdp_hash.go, which
// TestCommittedObjectsAreFresh checks: a source changed without
// regenerating fails the tests. -mcpu=v3 is for the atomic
// compare-and-swap in the rate limiter (the program as a whole needs
// Linux 5.18, for bpf_xdp_load_bytes and bpf_xdp_store_bytes); the -I
// directories hold <asm/types.h> on Debian for amd64 and arm64.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go@v0.22.0 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" xdp xdp.c
//go:generate go run hash_gen.go
