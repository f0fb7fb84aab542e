"""The Makefile's set-up, as ``make -n -B`` prints it (every target out of date, as on a fresh
clone; nothing runs): ``make demo`` installs only what the demo uses, ``make test`` the rest,
and installs and fuzzers are quiet (their output goes to a log, shown when they fail)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make")


def dry_run(target: str) -> list[str]:
    """The shell commands, each continued line joined to its command."""
    done = subprocess.run(
        ["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.replace("\\\n", " ").splitlines()


def extras(lines: list[str]) -> set[str]:
    return {e for line in lines for m in re.findall(r"--extras (\S+)", line) for e in m.split(",")}


def test_make_demo_installs_only_what_the_demo_uses() -> None:
    assert extras(dry_run("demo")) == {"cli", "plot"}


def test_make_test_installs_the_test_tools_and_every_integration() -> None:
    assert {"test", "integrations"} <= extras(dry_run("test"))


def test_installs_and_fuzz_runs_write_to_a_log_and_say_what_they_install() -> None:
    lines = dry_run("test")
    installs = [
        line for line in lines if "maturin develop" in line or re.search(r"cargo fuzz (run|build)", line)
    ]
    assert len(installs) >= 4
    for line in installs:
        assert re.search(r">\s*\S*log 2>&1", line), line  # quiet ...
        assert "cat " in line, line  # ... but the log is shown when it fails
    cargo_install = next(i for i, line in enumerate(lines) if "cargo install" in line)
    assert "installing cargo-fuzz" in "\n".join(lines[: cargo_install + 1])


def test_make_test_runs_every_style_check_before_the_tests() -> None:
    """``.ci/run`` is ``make test``: a style slip must turn it red."""
    lines = dry_run("test")
    checks = [
        "cargo fmt --all --check",
        "cargo fmt --check",
        "cargo clippy",
        "ruff check",
        "ruff format --check",
        "mypy",
    ]
    at = [next((i for i, line in enumerate(lines) if c in line), None) for c in checks]
    assert None not in at, dict(zip(checks, at, strict=True))
    first_test = next(i for i, line in enumerate(lines) if "cargo test" in line or "pytest" in line)
    assert max(at) < first_test
