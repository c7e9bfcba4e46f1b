# vswitch: `make run` starts vswitchd with its embedded default config;
# `make test` installs what the tests need and runs every test.
SHELL     := /bin/bash
GO        ?= go
BIN       := bin
FUZZTIME  ?= 5s
# Packages whose tests start real peers (testpmd, QEMU): one at a time, as
# every peer busy-polls a CPU and the machine may have only two.
PEER_PKGS := ./tests/... ./internal/testutil/...
UNIT_PKGS := $(shell $(GO) list ./... | grep -v -e /tests -e /internal/testutil)
export CGO_ENABLED := 0

.PHONY: all build run test deps check unit race fuzz peers bench microbench clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

run: build
	$(BIN)/vswitchd

test: deps check race fuzz peers

deps:
	scripts/install-deps.sh

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) build ./...

# The race detector needs cgo.
race:
	CGO_ENABLED=1 $(GO) test -race -count=1 $(UNIT_PKGS)

unit:
	$(GO) test -count=1 $(UNIT_PKGS)

# A short run of every fuzz target on top of its seed corpus (testdata/fuzz).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    for try in 1 2; do \
	      if out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); then echo "$$out" | tail -2; break; fi; \
	      echo "$$out"; \
	      if [ $$try = 2 ] || echo "$$out" | grep -q 'Failing input written' || ! echo "$$out" | grep -q 'context deadline exceeded'; then exit 1; fi; \
	      echo "fuzz $$f: the engine's own deadline expired with no failing input (a loaded machine); running it again"; \
	    done; \
	  done; done

peers:
	$(GO) test -p 1 -count=1 -timeout 20m -v $(PEER_PKGS)

# The peer benchmark (cmd/vswitch-bench): vswitchd vs OVS-DPDK vs testpmd
# net_vhost in the learned-unicast loop, then vswitchd's AF_XDP port vs
# DPDK's net_af_xdp (namespace generator -> veth -> vhost-user sink); prints
# a table for each, writes
# bench-results/bench.json and bench.png. BENCH_FLAGS passes flags
# (e.g. BENCH_FLAGS="-runs 5 -frames 64"). Needs root.
BENCH_FLAGS ?=
bench: build
	$(BIN)/vswitch-bench -vswitchd $(BIN)/vswitchd -out bench-results $(BENCH_FLAGS)

# Per-stage microbenchmarks (ring dequeue/enqueue, FDB, guest to guest).
microbench:
	$(GO) test -run '^$$' -bench . -benchmem $(UNIT_PKGS)

clean:
	rm -rf $(BIN)
