# Gregor: the two commands that matter are `make cluster` and `make test`.
# One cargo profile (release) serves the cluster, the tests and the benchmarks, so
# everything is built once.

CARGO ?= cargo
CARGO_FLAGS ?= --release --locked

.PHONY: all build deps cluster test lint unit it bench clean

all: build

deps:
	scripts/deps.sh

build:
	scripts/deps.sh --build
	$(CARGO) build $(CARGO_FLAGS) --bin gregor

cluster: build
	scripts/cluster.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy $(CARGO_FLAGS) --workspace --all-targets -- -D warnings

# Everything CI runs: formatting, lints, unit tests and the integration tests (real gregor
# processes driven by the stock Kafka CLI and a librdkafka client).
test: deps lint
	$(CARGO) test $(CARGO_FLAGS) --workspace

bench: deps build
	bench/run.sh

clean:
	$(CARGO) clean
