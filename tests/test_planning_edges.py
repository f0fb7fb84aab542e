"""The planner at its edges (rust/ul2-core/tests/planning.rs holds the exhaustive checks):
raw lengths whose counts T5's mask cannot draw, and budgets near the 2**32 - 1 token limit
of a row."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import ul2

S = ul2.Sentinels.t5(32100, count=400)


def lengths(raw: int, r: float, mu: float) -> tuple[int, int] | None:
    """Unrolled (inputs, targets) of a raw row with EOS, or None where T5 cannot draw it."""
    try:
        noise, spans = ul2.span_counts(raw, r, mu)
    except ValueError:
        return None
    return raw - noise + spans + 1, noise + max(spans, 1) + 1


def scan(inputs_length: int, r: float, mu: float) -> int | None:
    """The largest raw whose row T5 can draw and fits, with targets <= inputs at r = 0.5."""
    for raw in range(4 * inputs_length + 8, 0, -1):
        got = lengths(raw, r, mu)
        if got is not None and got[0] <= inputs_length and (r != 0.5 or got[1] <= got[0]):
            return raw
    return None


def test_mean_span_one_at_half_density_plans_raw_510_at_512() -> None:
    # T5's helper says (510, 512); at 510 its mask gives 511 targets, and 511 tokens (the
    # helper's loop stop) would need 256 spans among 255 non-noise tokens.
    assert ul2.plan_span_corruption(512, 0.5, 1.0) == (510, 511)
    denoiser = ul2.SpanCorruption(1.0, 0.5)
    (row,) = ul2.plan(denoiser, sentinels=S, inputs_length=512)
    assert (row.raw_length, row.inputs_length, row.targets_length, row.spans) == (510, 511, 511, 255)
    # Planned lengths are produced lengths.
    collator = ul2.Collator(denoiser, sentinels=S, inputs_length=512)
    out = collator(np.arange(2, 512, dtype=np.int32)[None, :], keys=[7])
    assert int(out["attention_mask"][0].sum()) == 511
    assert int((out["labels"][0] != -100).sum()) == 511


@pytest.mark.parametrize("mu", [1.0, 1.1, 1.2, 1.3])
def test_small_mean_spans_plan_the_largest_row_t5_can_draw(mu: float) -> None:
    for inputs_length in [*range(2, 40), 511, 512, 513, 1024]:
        raw, targets = ul2.plan_span_corruption(inputs_length, 0.5, mu)
        assert raw == scan(inputs_length, 0.5, mu), inputs_length
        assert lengths(raw, 0.5, mu) is not None
        assert targets == lengths(raw, 0.5, mu)[1]


def test_unrealisable_counts_are_reported_for_the_budgets_row() -> None:
    # At r = 0.6, mu = 1 no row of 5 tokens or more can be drawn (n = N > L - N).
    with pytest.raises(ValueError, match=r"^noise_density=0\.6: ") as e:
        ul2.plan_span_corruption(512, 0.6, 1.0)
    assert "a 511-token row" in str(e.value) and "3-token" not in str(e.value)


def test_too_small_names_the_shortest_row() -> None:
    with pytest.raises(ValueError) as e:
        ul2.plan(ul2.SpanCorruption(3.0, 0.5, num_spans=10), sentinels=S, sequence_length=30)
    want = (
        "sequence_length=30: too small: the shortest row (20 tokens) "
        "needs 42 tokens, 21 inputs and 21 targets"
    )
    assert want in str(e.value)


PREAMBLE = "import functools, ul2\nplan = functools.partial(ul2.plan, sentinels=ul2.Sentinels.t5(32100))\n"


def run(code: str) -> subprocess.CompletedProcess[str]:
    """`code` in a child: a planner that scans a 2**36 budget token by token takes minutes
    with the GIL held, and Ctrl-C cannot stop it."""
    return subprocess.run(
        [sys.executable, "-c", PREAMBLE + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("call", "arg"),
    [
        ("plan(ul2.PrefixLM(), inputs_length=2**36, targets_length=512)", "inputs_length=2**36"),
        ("plan(ul2.PrefixLM(), sequence_length=2**32)", "sequence_length=2**32"),
        ("plan(ul2.CausalLM(), inputs_length=512, targets_length=2**32)", "targets_length=2**32"),
        ("ul2.plan_span_corruption(2**36, 0.15)", "inputs_length=2**36"),
    ],
)
def test_budgets_beyond_the_row_limit_are_refused_at_once(call: str, arg: str) -> None:
    child = run(
        f"""
        try:
            {call}
        except ValueError as e:
            print(e)
        """
    )
    assert child.returncode == 0, child.stderr
    name, power = arg.split("=2**")
    want = f"{name}={2 ** int(power)}: too large: rows are limited to 2**32 - 1 tokens"
    assert want in child.stdout, child.stdout


def test_prefix_lm_plans_the_largest_row_at_once() -> None:
    child = run(
        """
        (row,) = plan(ul2.PrefixLM(), inputs_length=2**32 - 1, targets_length=512)
        print(row.raw_length, row.targets_length)
        """
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["512", "512"]
