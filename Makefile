# One Makefile for people and for SAM.
#   make test    everything: unit, integration against real servers, browser tests
#   make local   the whole system on this machine (see README)
#   make lint    gofmt, go vet, staticcheck
#   make bench   benchmarks and load programs, printed as a table
# SAM calls the build-<LogicalId> targets with ARTIFACTS_DIR set.

GO          ?= go
GOPATH_BIN  := $(shell $(GO) env GOPATH)/bin
export PATH := $(GOPATH_BIN):$(PATH)
GOARCH_LAMBDA ?= arm64
TEST_FLAGS  ?= -count=1 -timeout 20m

.PHONY: deps test test-short lint bench local build clean

deps:
	@.ci/install

test: deps
	$(GO) vet ./...
	$(GO) test $(TEST_FLAGS) ./...

test-short:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest >/dev/null 2>&1; then \
		staticcheck ./...; \
	else echo "lint: staticcheck could not be installed; skipped"; fi

BENCH_FLAGS ?= -run '^$$' -bench . -benchmem
BENCH_PKGS  ?= ./...

bench: deps
	@mkdir -p build
	@$(GO) test $(BENCH_FLAGS) $(BENCH_PKGS) 2>&1 | tee build/bench.out | awk -f .ci/benchtable.awk

clean:
	rm -rf bin build .aws-sam
