"""Shared by every test file: Hypothesis profiles, the default thread count restored after each
test, and skips that fail the run unless they are expected.

Hypothesis: "ci" (deterministic, 500 examples), "dev" (100), "thorough" (5000). Pick one with
HYPOTHESIS_PROFILE; the default is "ci" when CI is set, else "dev".
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest
import ul2
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=500,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile("thorough", max_examples=5000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))

# The only reasons a test may skip. Any other skip (a missing extra, a service that did not
# start, a platform check) hides a test that `make test` means to run, so it fails instead.
EXPECTED_SKIPS = frozenset(
    {
        "UL2_FUZZ=1",  # tests/test_robustness.py: the long runs, in `make fuzz`
    }
)


@pytest.fixture(autouse=True)
def _default_thread_count() -> Iterator[None]:
    """A test that sets the thread count (or a bad input that would have) leaves the default."""
    yield
    ul2.set_num_threads(None)


def _fail_unexpected_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr).removeprefix("Skipped: ")
    if reason not in EXPECTED_SKIPS:
        report.outcome = "failed"
        report.longrepr = f"unexpected skip: {reason!r}; the expected ones are {sorted(EXPECTED_SKIPS)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    _fail_unexpected_skip(report)
    return report


# A module-level `pytest.importorskip` skips while the file is collected, before any test runs.
@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report: pytest.CollectReport = yield
    _fail_unexpected_skip(report)
    return report
