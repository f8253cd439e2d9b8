# anyfront: `make run` starts the local demo, `make test` runs every test.
# Both install what they need first (scripts/install-deps.sh, Debian).

GO       ?= go
BIN      := bin
# Root-only tests may sit behind this build tag; they skip when not root.
TESTTAGS ?= privileged
# The integration tests start real resolvers and routers; bound the whole run.
TESTTIMEOUT ?= 12m

.PHONY: all build run test fmt vet clean

all: build

# build: bin/anyfront and bin/anyfrontctl
build:
	$(GO) build -o $(BIN)/anyfront ./cmd/anyfront
	@if [ -d cmd/anyfrontctl ]; then \
		echo "$(GO) build -o $(BIN)/anyfrontctl ./cmd/anyfrontctl"; \
		$(GO) build -o $(BIN)/anyfrontctl ./cmd/anyfrontctl; \
	fi

# run: the demo: two unbound resolvers, anyfront in front on 127.0.0.1:5300
# Steps run in order (not as prerequisites) so that make -j cannot build
# while packages are still being installed.
run:
	scripts/install-deps.sh run
	@$(MAKE) --no-print-directory build
	$(GO) run ./internal/testlab/cmd/demo -anyfront $(BIN)/anyfront

# test: install test dependencies, vet, run all tests
test:
	scripts/install-deps.sh test
	$(GO) vet -tags $(TESTTAGS) ./...
	$(GO) test -tags $(TESTTAGS) -count=1 -timeout $(TESTTIMEOUT) ./...

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet -tags $(TESTTAGS) ./...

clean:
	rm -rf $(BIN)

# bench: one unbound directly, dnsdist and anyfront side by side under
# dnsperf (bench/README.md); writes bench/RESULTS.md. About 8 minutes;
# BENCHFLAGS=-quick for a check in under 2.
.PHONY: bench
bench:
	scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	$(GO) run ./bench/cmd/bench -anyfront $(BIN)/anyfront -out bench/RESULTS.md $(BENCHFLAGS)

# generate: recompile ebpf/xdp.c with Debian's clang (bpf2go) and record the
# hashes that ebpf's TestCommittedObjectsAreFresh checks. The output is
# committed, so building anyfront needs no clang.
.PHONY: generate
generate:
	scripts/install-deps.sh generate
	$(GO) generate ./ebpf/...
