# encoder-bridge. "make demo" encodes and scans a card on a virtual encoder;
# "make test" runs every check CI runs. Both set the machine up first.
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The status page test keeps its Chromium screenshots here.
export STATUS_PAGE_OUT ?= $(CURDIR)/test-output/status-page

.PHONY: all build setup test unit conformance conformance-multi sdk seam-openapi check-fmt vet windows bench bench-scale demo fuzz clean deb test-deb msi proof load

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/...

setup:
	scripts/setup-debian.sh

check-fmt:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

windows:
	GOOS=windows $(GO) build ./...

# Hardware tests (hwtest, reader/pcsc) talk to the real pcscd through vpcd;
# with CI set they fail instead of skipping when it is missing. Then Seam's
# own JavaScript SDK drives the cloud, a bridge and a virtual card, and the
# Debian package is installed and purged on this machine.
test: setup check-fmt vet windows sdk
	$(GO) test -race -count=1 -timeout 45m ./...
	$(MAKE) conformance
	$(MAKE) conformance-multi
	$(MAKE) test-deb

# The Windows installer, built here with wixl:
# bin/encoder-bridge-VERSION-x64.msi (see docs/operations.md).
msi:
	VERSION=$(VERSION) scripts/build-msi.sh

# The Debian package for this machine's architecture, built with dpkg-deb
# from a staged tree: bin/encoder-bridge_VERSION_ARCH.deb.
deb:
	packaging/deb/build.sh $(BIN) $(VERSION)

# Installs, upgrades in place and purges the package on this machine (as
# root, or through sudo), runs systemd-analyze verify on its unit, and runs
# the installed bridge as its account against encoder-cloud under strace.
test-deb: build
	packaging/deb/test.sh "$$(packaging/deb/build.sh $(BIN) $(VERSION))" $(BIN)/encoder-cloud

# Conformance and the demo hold the lock of their vpcd slot (VPCD_ADDR,
# default "Virtual PCD 00 00") for the whole run, as the Go hardware tests
# do: a run waits while a test uses the slot, and no test's card lands in
# it between two of the run's cards.
conformance: sdk
	cd conformance && ../scripts/with-vpcd-slot.sh npm test

# Seam's JavaScript SDK in conformance/node_modules: the conformance tests,
# the demo and the load run in hwtest/load drive the cloud with it.
sdk:
	cd conformance && npm ci --no-audit --no-fund

# The same suite with the cloud as two instances on a throwaway
# PostgreSQL: the SDK calls one, the bridge is linked to the other.
conformance-multi:
	cd conformance && npm ci --no-audit --no-fund && CLOUD_INSTANCES=2 ../scripts/with-vpcd-slot.sh ../scripts/with-postgres.sh npm test

# Rewrites the Seam OpenAPI excerpt the Go tests check responses against,
# from the @seamapi/types version conformance/package-lock.json pins.
seam-openapi:
	cd conformance && npm ci --no-audit --no-fund && node seam-openapi.mjs ../cloud/cloudtest/testdata/seam-encoders-openapi.json

unit:
	$(GO) test -count=1 ./...

bench: setup sdk
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./cardfmt/... ./hwtest/... ./cloud/

# The cloud at scale (docs/benchmarks.md): 10,000 idle bridges held by
# one and by two encoder-cloud processes on SQLite and by two on one
# PostgreSQL database, from fakebridges processes of their own, then
# dispatch latency and throughput on one instance of each store and
# across two instances; about twelve minutes.
# SCALE_DB, SCALE_BRIDGES, SCALE_INSTANCES, SCALE_FLEETS, SCALE_WINDOW and
# SCALE_CLIENTS change the runs (cloud/cloudtest/scale).
SCALE_BENCH = $(GO) test -run '^$$' -timeout 30m ./cloud/cloudtest/scale/
bench-scale:
	SCALE_INSTANCES=1 $(SCALE_BENCH) -bench Idle -benchtime 1x
	SCALE_INSTANCES=2 $(SCALE_BENCH) -bench Idle -benchtime 1x
	SCALE_DB=postgres SCALE_INSTANCES=2 $(SCALE_BENCH) -bench Idle -benchtime 1x
	$(SCALE_BENCH) -bench Dispatch -benchtime 500x
	$(SCALE_BENCH) -bench Throughput -benchtime 1x

# The fault matrix on the real binaries with every APDU index of every
# layout's encode (go test runs a sample): see docs/reliability.md. With
# CI set it also restarts pcscd, which it must own.
proof: setup
	FAULT_FULL=1 $(GO) test -count=1 -timeout 90m -v -run . ./hwtest/fault/
	$(MAKE) load

# The load run over a flapping link (docs/reliability.md): 8 virtual
# encoders on a private pcscd, 1,000 jobs from Seam's SDK, the link cut
# every 50 jobs, pcscd restarted once, the bridge killed once. go test
# runs a small variant that checks correctness only.
load: setup sdk
	LOAD_FULL=1 $(GO) test -count=1 -timeout 60m -v -run '^TestLoad$$' ./hwtest/load/

# Runs every fuzz target for FUZZTIME each, and stops at the first that
# finds a failure (the input lands in that package's testdata/fuzz) or
# does not build. Seeds and earlier findings in testdata/fuzz run in
# every "go test".
FUZZTIME ?= 20s
# Minimizing a new input counts no execs and, at go's default of 60s,
# took a whole short run of FuzzCheckFile (inputs of about 100 KB).
FUZZMINIMIZETIME ?= 5s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		ts=$$($(GO) test -list '^Fuzz' $$pkg) || { echo "$$ts"; exit 1; }; \
		for t in $$(echo "$$ts" | grep '^Fuzz' || true); do \
			echo "fuzz: $$pkg $$t for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZETIME) $$pkg; \
		done; \
	done

demo: setup build
	scripts/demo.sh

clean:
	rm -rf $(BIN)
