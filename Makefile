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
	$(BIN)/maturin develop --release --quiet --extras test,integrations
	touch $@

demo: $(VENV)/.built
	$(BIN)/ul2 demo

test: test-rust test-python fuzz-smoke

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

# Fuzzing the core (fuzz/: cargo-fuzz targets in a workspace of their own, so the root
# `cargo test` never builds them). cargo-fuzz passes -Z flags; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them, so no nightly is needed. No sanitizer (ul2-core forbids unsafe code);
# debug assertions and overflow checks are on. Crashes land in fuzz/artifacts/<target>/.
FUZZ_TARGETS := mask_sampling mask_application planner sample_index packing
FUZZ_SECONDS ?= 30
FUZZ_RUNS ?= 50000
CARGO_FUZZ := RUSTC_BOOTSTRAP=1 cargo fuzz

.PHONY: fuzz fuzz-smoke fuzz-build

fuzz-build:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	$(CARGO_FUZZ) build -s none

# Part of `make test`: each target for FUZZ_RUNS executions from a fixed seed (reproducible).
fuzz-smoke: fuzz-build
	for t in $(FUZZ_TARGETS); do \
		$(CARGO_FUZZ) run -s none $$t -- -runs=$(FUZZ_RUNS) -seed=1 -rss_limit_mb=4096 || exit 1; \
	done

# Nightly-style: each target for FUZZ_SECONDS (growing fuzz/corpus/), then every test with the
# Hypothesis profile "thorough" (5000 examples a property) and the long robustness runs
# (UL2_FUZZ=1: 4 x 10^6 small calls, an int64 packed 10^8-token batch).
fuzz: fuzz-build $(VENV)/.built
	for t in $(FUZZ_TARGETS); do \
		$(CARGO_FUZZ) run -s none $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
			|| exit 1; \
	done
	HYPOTHESIS_PROFILE=thorough UL2_FUZZ=1 $(PY) -m pytest tests -q

lint: $(VENV)/.built
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) target fuzz/target python/ul2/_ul2*.so
