# Gregor: the two commands that matter are `make cluster` and `make test`.
# One cargo profile (release) serves the cluster, the tests and the benchmarks, so
# everything is built once.

CARGO ?= cargo
CARGO_FLAGS ?= --release --locked

.PHONY: all build deps cluster test lint unit it bench jepsen clean

all: build

deps:
	scripts/deps.sh

build:
	scripts/deps.sh --build
	$(CARGO) build $(CARGO_FLAGS) --bin gregor

cluster: build
	scripts/cluster.sh

# Go builds and tests the porcupine checker (jepsen/porcupine).
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings
	cd jepsen/porcupine && test -z "$$(gofmt -l .)" && $(GO) vet ./...

# Everything CI runs: formatting, lints, unit tests, the integration tests (real gregor
# processes driven by the stock Kafka CLI and a librdkafka client, and a short jepsen/ run),
# and the porcupine checker's tests.
test: deps lint
	$(CARGO) test $(CARGO_FLAGS) --workspace
	cd jepsen/porcupine && $(GO) test ./...

# Fault-injection runs against a three-node cluster (see docs/jepsen.md). JEPSEN_ARGS adds or
# overrides options, e.g. JEPSEN_ARGS="--time-limit 300 --nemesis partition".
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
JEPSEN_ARGS ?=
jepsen: deps
	$(CARGO) build $(CARGO_FLAGS) -p gregor -p gregor-jepsen
	$(TARGET_DIR)/release/gregor-jepsen run --gregor $(TARGET_DIR)/release/gregor --time-limit 180 --nemesis all $(JEPSEN_ARGS)

bench: deps build
	bench/run.sh

clean:
	$(CARGO) clean
