# Everyday targets. Each sets itself up from nothing: a .venv, the extension built in
# release mode with maturin, and only the packages the target uses: `make demo` the cli and
# plot extras (click, rich, matplotlib); `make test` the test and integrations extras as well
# (PyTorch with its CUDA libraries, Ray, transformers, JAX: several GB the first time). Installs
# are logged to .venv/install.log, which is shown only when one fails.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export VIRTUAL_ENV := $(abspath $(VENV))
RUST_SRC := $(shell find rust -name '*.rs' -o -name Cargo.toml) Cargo.toml Cargo.lock pyproject.toml
INSTALL_LOG := $(VENV)/install.log
# maturin develop: the extension built in release mode into python/ul2/ (an editable install),
# then pip installs the extras named after it.
DEVELOP = $(BIN)/maturin develop --release --quiet --extras

.PHONY: demo test test-rust test-python bench lint clean

$(BIN)/maturin:
	@echo "make: creating $(VENV) (pip, maturin)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet "maturin>=1.16,<2"

# Rebuilt when the Rust sources change; the packages of the demo come with it.
$(VENV)/.built: $(BIN)/maturin $(RUST_SRC)
	@echo "make: building the extension (release) with the cli and plot extras"
	@$(DEVELOP) cli,plot >$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }
	@touch $@

# What the tests, benches and examples import besides (a rebuild of the extension keeps it).
$(VENV)/.test-deps: $(BIN)/maturin pyproject.toml
	@echo "make: installing the test and integrations extras (PyTorch with CUDA, Ray, transformers, JAX)"
	@$(DEVELOP) test,integrations >$(INSTALL_LOG) 2>&1 || { cat $(INSTALL_LOG); exit 1; }
	@touch $@

demo: $(VENV)/.built
	$(BIN)/ul2 demo

# The style checks first: a slip is red CI like a failing test.
test: lint test-rust test-python fuzz-smoke

# The criterion benches run once each as tests, so a broken bench fails here, not later.
test-rust:
	cargo test --workspace --exclude ul2-python
	cargo test -p ul2-benches --benches

test-python: $(VENV)/.test-deps $(VENV)/.built
	$(PY) -m mypy.stubtest ul2._ul2 --allowlist tests/stubtest-allowlist.txt
	$(PY) -m pytest tests benches/python --benchmark-disable -q

# Criterion for the core; pytest-benchmark pairs; report.py's table, JSON and PNG
# (bench-results/); the 10^9-token memmap run (index speed, bytes/sample, flat heap).
bench: $(VENV)/.test-deps $(VENV)/.built
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
	@command -v cargo-fuzz >/dev/null || { \
		echo "make: installing cargo-fuzz (cargo install cargo-fuzz --locked), once"; \
		cargo install --quiet cargo-fuzz --locked; }
	@echo "make: building the fuzz targets"
	@mkdir -p fuzz/target
	@$(CARGO_FUZZ) build -s none >fuzz/target/build.log 2>&1 || { cat fuzz/target/build.log; exit 1; }

# Part of `make test`: each target for FUZZ_RUNS executions from a fixed seed (reproducible).
# One line per target; libFuzzer's own output (thousands of lines) is in fuzz/target/<target>.log,
# printed when the target fails.
fuzz-smoke: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		log=fuzz/target/$$t.log; \
		if $(CARGO_FUZZ) run -s none $$t -- -runs=$(FUZZ_RUNS) -seed=1 -rss_limit_mb=4096 >$$log 2>&1; then \
			echo "fuzz $$t: $$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second\(s\)' $$log | tail -1)"; \
		else \
			cat $$log; echo "fuzz $$t: FAILED (the log above is $$log)"; exit 1; \
		fi; \
	done

# Nightly-style: each target for FUZZ_SECONDS (growing fuzz/corpus/), then every test with the
# Hypothesis profile "thorough" (5000 examples a property) and the long robustness runs
# (UL2_FUZZ=1: 4 x 10^6 small calls, an int64 packed 10^8-token batch).
fuzz: fuzz-build $(VENV)/.test-deps $(VENV)/.built
	for t in $(FUZZ_TARGETS); do \
		$(CARGO_FUZZ) run -s none $$t -- -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 \
			|| exit 1; \
	done
	HYPOTHESIS_PROFILE=thorough UL2_FUZZ=1 $(PY) -m pytest tests -q

# rustfmt and clippy over both workspaces (fuzz/ is its own), ruff (lint and format), mypy.
lint: $(VENV)/.test-deps $(VENV)/.built
	cargo fmt --all --check
	cd fuzz && cargo fmt --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(BIN)/ruff check python tests benches examples
	$(BIN)/ruff format --check python tests benches examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) target fuzz/target python/ul2/_ul2*.so
