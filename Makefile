# One Makefile for people and for SAM.
#   make test    everything: unit, integration against real servers, browser tests
#   make local   the whole system on this machine (see README)
#   make lint    gofmt, go vet, staticcheck
#   make bench   benchmarks and load programs, printed as a table
# SAM calls the build-<LogicalId> targets with ARTIFACTS_DIR set. `make test`
# also runs AWS's tools on the template: cfn-lint, `sam validate --lint` and
# `sam build` of a clean copy for both architectures (pkg/samtemplate).

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

# make local: the whole system in one process (functions/local) with the UI
# on http://127.0.0.1:8080; docs/local.md lists its settings. Runners, jobs
# and keys are kept in LOCAL_DATA_DIR (.local) across restarts; run
# `make local LOCAL_DATA_DIR=` to keep everything in memory. Ctrl-C stops it
# and everything it started.
LOCAL_DATA_DIR ?= .local

local: deps
	@mkdir -p bin
	$(GO) build -o bin/local ./functions/local
	LOCAL_DATA_DIR="$(LOCAL_DATA_DIR)" bin/local

# ---- Lambda builds: SAM's makefile builder runs `make build-<LogicalId>`
# with ARTIFACTS_DIR set, through arch/<Architecture>/Makefile (the
# template's ContextPath), which sets GOARCH_LAMBDA for the template's
# Architecture parameter and includes this file. `make build` runs every
# target into build/<LogicalId>/; GOARCH_LAMBDA=amd64 builds for x86_64.
# REVISION is CI_RUNNER_REVISION in jobs (the executor's -X main.buildRevision);
# empty where there is no git checkout, and the executor falls back.
REVISION ?= $(shell git rev-parse --short=8 HEAD 2>/dev/null)
# LINUX_GOBUILD builds for Lambda's Linux; the architecture is the caller's.
LINUX_GOBUILD = CGO_ENABLED=0 GOOS=linux $(GO) build -tags lambda.norpc -trimpath -ldflags='-s -w -X main.buildRevision=$(REVISION)'
LAMBDA_GOBUILD = GOARCH=$(GOARCH_LAMBDA) $(LINUX_GOBUILD)
LAMBDA_ARTIFACTS = WebFunction SchedulerFunction PollerFunction FinisherFunction PreparerFunction ExecutorFunction ExecutorPythonFunction ExecutorNodeFunction ExecutorLayer
EXECUTOR_LAYER_SRC = functions/executor/layer

.PHONY: $(addprefix build-,$(LAMBDA_ARTIFACTS))

build:
	@set -e; for id in $(LAMBDA_ARTIFACTS); do \
		rm -rf "build/$$id"; mkdir -p "build/$$id"; \
		$(MAKE) --no-print-directory "build-$$id" ARTIFACTS_DIR="$(CURDIR)/build/$$id"; \
		echo "build: $$id"; \
	done

build-WebFunction:
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/web

build-SchedulerFunction:
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/scheduler

build-PollerFunction:
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/poller

build-FinisherFunction:
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/finisher

build-ExecutorFunction:
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/executor

# The preparation function, with the executor for each architecture a job
# may choose (LAMBDA_ARCH): it puts one into every image it derives, as
# executors/<arch>/executor of its package.
build-PreparerFunction:
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/bootstrap" ./functions/preparer
	GOARCH=arm64 $(LINUX_GOBUILD) -o "$(ARTIFACTS_DIR)/executors/arm64/executor" ./functions/executor
	GOARCH=amd64 $(LINUX_GOBUILD) -o "$(ARTIFACTS_DIR)/executors/x86_64/executor" ./functions/executor

# Managed runtimes: the executor comes from ExecutorLayer through
# AWS_LAMBDA_EXEC_WRAPPER; the function's own code is a handler that only
# answers when the wrapper did not take over.
build-ExecutorPythonFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp $(EXECUTOR_LAYER_SRC)/fallback/index.py "$(ARTIFACTS_DIR)/"

build-ExecutorNodeFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp $(EXECUTOR_LAYER_SRC)/fallback/index.mjs "$(ARTIFACTS_DIR)/"

# Layer contents land under /opt: /opt/gsr/executor and /opt/gsr/exec-wrapper.
build-ExecutorLayer:
	mkdir -p "$(ARTIFACTS_DIR)/gsr"
	$(LAMBDA_GOBUILD) -o "$(ARTIFACTS_DIR)/gsr/executor" ./functions/executor
	cp $(EXECUTOR_LAYER_SRC)/exec-wrapper "$(ARTIFACTS_DIR)/gsr/exec-wrapper"
	chmod 0755 "$(ARTIFACTS_DIR)/gsr/exec-wrapper" "$(ARTIFACTS_DIR)/gsr/executor"

clean:
	rm -rf bin build .aws-sam
