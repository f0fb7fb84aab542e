# Everyday targets. Each sets itself up from nothing: a .venv, the extension built in
# release mode with maturin, the test extras installed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export VIRTUAL_ENV := $(abspath $(VENV))
RUST_SRC := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock pyproject.toml

.PHONY: demo test test-rust test-python bench lint clean

$(BIN)/maturin:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "maturin>=1.16,<2"

# Built into python/ul2/ (editable install); rebuilt when the Rust sources change.
$(VENV)/.built: $(BIN)/maturin $(RUST_SRC)
	$(BIN)/maturin develop --release --quiet --extras test
	touch $@

demo: $(VENV)/.built
	$(PY) -m ul2 demo

test: test-rust test-python

# The criterion benches run once each as tests, so a broken bench fails here, not later.
test-rust:
	cargo test --workspace --exclude ul2-python
	cargo test -p ul2-benches --benches

test-python: $(VENV)/.built
	$(PY) -m mypy.stubtest ul2._ul2 --allowlist tests/stubtest-allowlist.txt
	$(PY) -m pytest tests benches/python --benchmark-disable -q

# Criterion for the core; pytest-benchmark pairs; report.py's table, JSON and PNG
# (bench-results/); the 10^9-token memmap run (index speed, bytes/sample, flat heap).
bench: $(VENV)/.built
	$(BIN)/maturin develop --release --quiet --extras test,plot
	cargo bench -p ul2-benches
	$(PY) -m pytest benches/python -q --benchmark-only
	$(PY) benches/report.py
	$(PY) benches/stream.py

lint: $(VENV)/.built
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) target python/ul2/_ul2*.so
