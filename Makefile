# One task runner for people and CI. `make demo` and `make test` are the two
# commands of the README; both install what they need.

CARGO ?= cargo

.PHONY: all build demo test test-rust lint bench fmt clean

all: build

build:
	$(CARGO) build --release --workspace --all-targets

## The main job: build everything and run the demo.
demo: build
	./target/release/examples/cluster

## Every test, and the lint gates.
test: lint test-rust

test-rust:
	$(CARGO) test --release --workspace

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

## Benchmark table (see README).
bench:
	$(CARGO) run --release -p cas-bench

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .venv build
