# Gregor: the two commands that matter are `make cluster` and `make test`.
# One cargo profile, `checked` (release optimisations with debug assertions and overflow
# checks), serves the cluster, the tests and the fault-injection runs, so they are built
# once and every invariant written as `debug_assert!` runs in them. Benchmarks build the
# plain `release` profile.

CARGO ?= cargo
PROFILE ?= checked
CARGO_FLAGS ?= --profile $(PROFILE) --locked
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

.PHONY: all build deps cluster test lint unit it bench jepsen clean fuzz fuzz-long

all: build

deps:
	scripts/deps.sh

build:
	scripts/deps.sh --build
	$(CARGO) build $(CARGO_FLAGS) --bin gregor

cluster: build
	GREGOR_BIN=$(TARGET_DIR)/$(PROFILE)/gregor scripts/cluster.sh

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
	$(MAKE) fuzz

# Coverage-guided fuzzing (docs/testing.md): each fuzz/ target for FUZZ_SECONDS, from the
# committed seeds; a crash fails. `make fuzz-long FUZZ_SECONDS=3600` for a longer run.
fuzz:
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),25) scripts/fuzz.sh

fuzz-long:
	FUZZ_SECONDS=$(or $(FUZZ_SECONDS),600) scripts/fuzz.sh

# Fault-injection runs against a three-node cluster (see docs/jepsen.md). JEPSEN_ARGS adds or
# overrides options, e.g. JEPSEN_ARGS="--time-limit 300 --nemesis partition".
JEPSEN_ARGS ?=
jepsen: deps
	$(CARGO) build $(CARGO_FLAGS) -p gregor -p gregor-jepsen
	$(TARGET_DIR)/$(PROFILE)/gregor-jepsen run --gregor $(TARGET_DIR)/$(PROFILE)/gregor --time-limit 180 --nemesis all $(JEPSEN_ARGS)

# Benchmarks measure the plain release build.
bench: deps
	$(CARGO) build --release --locked --bin gregor
	GREGOR_BIN=$(TARGET_DIR)/release/gregor bench/run.sh

clean:
	$(CARGO) clean
