# anyfront: `make run` starts the local demo, `make test` runs every test.
# Both install what they need first (scripts/install-deps.sh, Debian).

GO       ?= go
BIN      := bin
# The integration tests start real resolvers and routers; bound the whole run.
# Root-only tests need no build tag: they check the user and skip when not
# root (testlab.RequireRoot).
TESTTIMEOUT ?= 12m

.PHONY: all build run test test-short race fmt vet clean

all: build

# VERSION is stamped into both binaries (anyfront -version, anyfrontctl
# -version, anyfront_build_info); "dev" outside a git checkout.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# build: bin/anyfront and bin/anyfrontctl
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/anyfront ./cmd/anyfront
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/anyfrontctl ./cmd/anyfrontctl

# run: the demo: two unbound resolvers, anyfront in front on 127.0.0.1:5300
# Steps run in order (not as prerequisites) so that make -j cannot build
# while packages are still being installed.
run:
	scripts/install-deps.sh run
	@$(MAKE) --no-print-directory build
	$(GO) run ./internal/testlab/cmd/demo -anyfront $(BIN)/anyfront

# test: install test dependencies, vet, run all tests. install-deps.sh has
# just run, so a program a test needs and cannot find means the install went
# wrong: ANYFRONT_LAB_STRICT=1 makes such a test fail where a plain go test
# skips it (docs/testing.md#skips); ANYFRONT_LAB_STRICT=0 make test skips.
test: export ANYFRONT_LAB_STRICT ?= 1
test:
	scripts/install-deps.sh test
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TESTTIMEOUT) ./...
	$(MAKE) --no-print-directory race
	$(MAKE) --no-print-directory fuzz-short

# test-short: the unit tests alone, in seconds, installing nothing: -short
# skips every test that starts a real peer (resolver, router, namespace,
# browser, the built binaries).
test-short:
	$(GO) test -short -count=1 ./...

# deb: dist/anyfront_VERSION_ARCH.deb (nfpm; docs/deploy.md#package).
.PHONY: deb
deb:
	@$(MAKE) --no-print-directory build
	GO=$(GO) scripts/deb.sh $(VERSION)

# race: the proxy tree's unit tests under the race detector (about 40s on
# two cores). -short leaves out the tests with real peers: under -race their
# timing-bound checks (e.g. TestLabXDPAnswers' publication window) fail for
# slowness, not for races, and they would double the run.
race:
	$(GO) test -race -short -count=1 ./proxy/...

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN) dist

# bench: one unbound directly, dnsdist and anyfront side by side under
# dnsperf, over UDP, DoT and DoH (bench/README.md); writes bench/RESULTS.md.
# About 12 minutes; BENCHFLAGS=-quick for a check in about 3,
# BENCHFLAGS='-workloads dot,doh -rounds 1' for one part. As root it then
# runs bench-xdp too (namespaces and XDP need root): XDP drops and the XDP
# answer cache against the proxy and dnsdist on a veth, bench/XDP.md.
.PHONY: bench
bench:
	scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	$(GO) run ./bench/cmd/bench -anyfront $(BIN)/anyfront -out bench/RESULTS.md $(BENCHFLAGS)
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory bench-xdp; \
	else echo "bench-xdp skipped: it needs root"; fi

# bench-profile: CPU profiles of anyfront on the miss and hit workloads at
# 20k q/s, summarised into bench/profiles/ (kernel / Go runtime / our code).
# About a minute.
.PHONY: bench-profile
bench-profile:
	scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	$(GO) run ./bench/cmd/bench -anyfront $(BIN)/anyfront -profile bench/profiles $(BENCHFLAGS)

# generate: recompile ebpf/xdp.c with Debian's clang (bpf2go) and record the
# hashes that ebpf's TestCommittedObjectsAreFresh checks. The output is
# committed, so building anyfront needs no clang.
.PHONY: generate
generate:
	scripts/install-deps.sh generate
	$(GO) generate ./ebpf/...

# fuzz: every fuzz target for FUZZTIME each (seeds under */testdata/fuzz/;
# a crash is written there as a new regression seed). fuzz-short runs each
# for a few seconds, so the corpora stay honest in `make test`. FUZZTIME is
# -fuzztime: a duration (60s) or a count of executions (100000x). Go 1.26's
# fuzz coordinator can fail a duration-bounded run with a bare "context
# deadline exceeded" and no crasher when the CPU is busy (go.dev/issue/75804,
# fixed in Go 1.27), so fuzz-short, which CI runs, uses a count: 10000
# executions take 0.5-4 s per target.
FUZZTIME ?= 60s
FUZZSHORT ?= 10000x
FUZZTARGETS := ./proxy/dnswire:FuzzParseQuery ./proxy:FuzzMatchResponse ./proxy/pcache:FuzzCache \
	./proxy/rules:FuzzRuleMatch ./proxy/stream:FuzzTCPReader ./proxy/pcache:FuzzECS ./ebpf:FuzzXDPAgreesWithParser \
	./proxy/stream/h2:FuzzServeConn ./config:FuzzParse ./ebpf:FuzzAnswerCache
.PHONY: fuzz fuzz-short
fuzz:
	@set -e; for t in $(FUZZTARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "$(GO) test $$pkg -run '^$$' -fuzz '^'$$fn'$$' -fuzztime $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME); \
	done
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSHORT)

# soak (not in CI): anyfront at half its measured max q/s for SOAKTIME while
# its backends restart every 30 s; RSS and goroutines must stay flat.
SOAKTIME ?= 10m
.PHONY: soak
soak:
	scripts/install-deps.sh test
	ANYFRONT_SOAK=$(SOAKTIME) $(GO) test ./e2e -run '^TestSoak$$' -count=1 -v -timeout 0

# lab (root): the anycast lab in network namespaces: a BIRD 2 router with
# ECMP, two anyfront nodes announcing 192.0.2.53/32 and 2001:db8:53::53/128,
# each with two unbound backends, and a client (docs/lab.md). It prints what
# to try and tears everything down on Ctrl-C.
.PHONY: lab
lab:
	scripts/install-deps.sh test
	@$(MAKE) --no-print-directory build
	$(GO) run ./internal/testlab/cmd/lab -anyfront $(BIN)/anyfront -anyfrontctl $(BIN)/anyfrontctl

# bench-xdp (root): packets/s dropped in XDP for a blocklisted source versus
# the same traffic refused by the proxy's ACL, and cache hits answered by the
# XDP answer cache versus the proxy's cache, with anyfront's and softirq CPU,
# in two network namespaces; writes bench/XDP.md. About two minutes.
.PHONY: bench-xdp
bench-xdp:
	scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	$(GO) run ./bench/xdp -anyfront $(BIN)/anyfront -out bench/XDP.md $(BENCHXDPFLAGS)
