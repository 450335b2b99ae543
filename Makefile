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
test: lint test-rust test-py

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

# ---- Python package `cas` (cas-py): venv, build, tests, demo -------------------
# Everything Python runs from .venv, which this block creates and fills; the
# machine's own maturin/pytest are never used.
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python

.PHONY: venv py test-py test-py-network demo-py

venv: $(VENV)/.installed

$(VENV)/.installed:
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet "maturin>=1.9.4,<2" pytest tqdm
	touch $@

## Builds the abi3 wheel (release) and installs it, with the `cas` command, into .venv.
py: venv
	$(VENV_PY) -m pip install --quiet --no-build-isolation --force-reinstall --no-deps ./cas-py

## pytest exits 5 when it collects no test: a failure here like any non-zero status.
test-py: py
	$(VENV_PY) -m pytest tests/python -q

## Only the multi-node tests.
test-py-network: py
	$(VENV_PY) -m pytest tests/python -q -m network

## 5 `cas serve` processes, a 100 MB file, two nodes killed with SIGKILL.
demo-py: py
	$(VENV_PY) scripts/demo.py
# ---- end of the Python block ----------------------------------------------------
