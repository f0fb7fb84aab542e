"""TextInfilling (BART's text infilling, issue 14 item 2): the API, bad arguments, planned ==
produced in both families, mixing with UL2's denoisers, the exact laws by goodness of fit, and
fairseq's DenoisingDataset (a NumPy transcription of its algorithm) compared by distribution."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest
import ul2
from hypothesis import given
from hypothesis import strategies as st
from ul2 import testing
from ul2.stats import infilling as law

SENTINELS = ul2.Sentinels.t5(32100)
MASK = 2


def stream(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 30000, size=n).astype(np.int32)


# --- API ---------------------------------------------------------------------------------------


def test_signature_defaults_and_round_trip() -> None:
    sig = inspect.signature(ul2.TextInfilling)
    assert list(sig.parameters) == ["noise_density", "poisson_lambda", "mask_id", "prefix"]
    assert sig.parameters["mask_id"].kind is inspect.Parameter.KEYWORD_ONLY
    d = ul2.TextInfilling(mask_id=MASK)
    assert (d.noise_density, d.poisson_lambda, d.prefix) == (0.3, 3.5, ())
    assert d.label == "TextInfilling(0.3, 3.5)"
    assert ul2.TextInfilling(0.4, 2.0, mask_id=5, prefix=(9,)).label == "TextInfilling(0.4, 2) +1 prompt"
    m = ul2.Mixture([(d, 1.0), (ul2.SpanCorruption(3, 0.15), 1.0)])
    assert ul2.Mixture.from_json(m.to_json()) == m
    assert m.to_dict()["denoisers"][0] == {
        "rate": 1.0,
        "type": "TextInfilling",
        "noise_density": 0.3,
        "poisson_lambda": 3.5,
        "mask_id": MASK,
        "prefix": [],
    }
    with pytest.raises(TypeError, match="mask_id"):
        ul2.TextInfilling()  # type: ignore[call-arg]


BAD = testing.BadInputs()
BAD.add("noise_density>1", lambda: ul2.TextInfilling(1.5, mask_id=2), ValueError, "noise_density=1.5")
BAD.add("noise_density nan", lambda: ul2.TextInfilling(math.nan, mask_id=2), ValueError, "noise_density=")
BAD.add("noise_density str", lambda: ul2.TextInfilling("0.3", mask_id=2), TypeError, "noise_density=")  # type: ignore[arg-type]
BAD.add("lambda 0", lambda: ul2.TextInfilling(poisson_lambda=0, mask_id=2), ValueError, "poisson_lambda=0")
BAD.add(
    "lambda inf", lambda: ul2.TextInfilling(poisson_lambda=math.inf, mask_id=2), ValueError, "poisson_lambda="
)
BAD.add("lambda big", lambda: ul2.TextInfilling(poisson_lambda=1e3, mask_id=2), ValueError, "poisson_lambda=")
BAD.add("mask_id<0", lambda: ul2.TextInfilling(mask_id=-1), ValueError, "mask_id=-1")
BAD.add("mask_id None", lambda: ul2.TextInfilling(mask_id=None), TypeError, "mask_id=None")  # type: ignore[arg-type]
BAD.add("mask_id float", lambda: ul2.TextInfilling(mask_id=2.0), TypeError, "mask_id=")  # type: ignore[arg-type]
BAD.add(
    "mask_id a sentinel",
    lambda: ul2.DenoisingDataset(
        stream(5000), ul2.TextInfilling(mask_id=32099), sentinels=SENTINELS, inputs_length=64
    ),
    ValueError,
    "mask_id=32099",
)
BAD.add(
    "mask_id past int32",
    lambda: ul2.Collator(ul2.TextInfilling(mask_id=2**40), sentinels=SENTINELS, inputs_length=64),
    ValueError,
    "mask_id=",
)
BAD.add(
    "budget too small",
    lambda: ul2.plan(ul2.TextInfilling(mask_id=2, prefix=(5, 6)), sentinels=SENTINELS, inputs_length=3),
    ValueError,
    "inputs_length=3",
)


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_arguments_name_the_argument(case: testing.BadInput) -> None:
    case.check()


# --- planning, both families, mixing ------------------------------------------------------------


def test_plan_fills_the_budget() -> None:
    d = ul2.TextInfilling(mask_id=MASK, prefix=(7,))
    (row,) = ul2.plan(d, sentinels=SENTINELS, inputs_length=512)
    assert (row.raw_length, row.inputs_length, row.targets_length, row.spans) == (510, 512, 511, 153)
    (row,) = ul2.plan(d, sentinels=SENTINELS, sequence_length=1024)
    assert (row.raw_length, row.inputs_length + row.targets_length) == (510, 1023)  # 2 raw + 3 is odd
    (row,) = ul2.plan(d, sentinels=SENTINELS, inputs_length=512, targets_length=200)
    assert (row.raw_length, row.targets_length) == (199, 200)


@given(
    mixture=testing.mixtures(kinds=("infilling",), max_denoisers=2)
    | st.tuples(testing.text_infillings(), testing.span_corruptions(max_noise_density=0.5)).map(
        lambda ds: ul2.Mixture([(ds[0], 1.0), (ds[1], 1.0)])
    ),
    budget=testing.budgets(),
    tokens=testing.token_streams(min_length=1, max_length=3000),
    seed=st.integers(0, 2**64 - 1),
)
def test_planned_is_produced_in_both_families(
    mixture: ul2.Mixture, budget: dict[str, Any], tokens: np.ndarray, seed: int
) -> None:
    if not testing.plannable(mixture, budget, SENTINELS):
        return
    ds = ul2.DenoisingDataset(tokens, mixture, sentinels=SENTINELS, seed=seed, **budget)
    keys = range(min(16, ds.num_samples))
    testing.check_batch(ds, keys)  # every example against its raw slice, the layout, padding
    table = ul2.plan(mixture, sentinels=SENTINELS, **budget)
    out = ds.batch(list(keys)) if len(keys) else None
    for i, k in enumerate(keys):
        assert out is not None
        d = int(out["denoiser"][i])
        lo, hi = ds.span(k)
        assert hi - lo == table[d].raw_length  # raw fills the plan
        if "attention_mask" in out and "decoder_attention_mask" in out:
            assert out["attention_mask"][i].sum() <= table[d].inputs_length
            assert out["decoder_attention_mask"][i].sum() <= table[d].targets_length


@pytest.mark.parametrize("fmt", ["hf", "seqio", "decoder", "seqio_decoder"])
@pytest.mark.parametrize("pack", [False, True])
def test_mixes_with_ul2_in_every_format(fmt: str, pack: bool) -> None:
    mixture = ul2.Mixture([*ul2.presets.ul2().entries, (ul2.TextInfilling(mask_id=MASK, prefix=(4,)), 1.0)])
    budget: dict[str, Any] = (
        {"sequence_length": 512} if "decoder" in fmt else {"inputs_length": 512, "targets_length": 512}
    )
    sentinels = ul2.Sentinels.t5(32100, count=300)  # X(3, .5) at 512 inputs needs 128
    ds = ul2.DenoisingDataset(
        stream(200_000), mixture, sentinels=sentinels, format=fmt, pack=pack, seed=3, **budget
    )
    out = ds.batch(list(range(min(64, len(ds)))))
    assert out["denoiser"].size
    if not pack and fmt in ("hf", "decoder"):
        testing.check_batch(ds, range(64))
        which = out["denoiser"]
        assert (which == len(mixture) - 1).any()  # text infilling was drawn


def test_rows_are_keyed_and_epochs_differ() -> None:
    d = ul2.TextInfilling(mask_id=MASK)
    tokens = stream(50_000)
    a = ul2.DenoisingDataset(tokens, d, sentinels=SENTINELS, inputs_length=128, seed=5)
    b = ul2.DenoisingDataset(tokens, d, sentinels=SENTINELS, inputs_length=128, seed=5)
    whole = a.batch(list(range(40)))
    for k in (0, 17, 39):
        one = b.batch([k])
        np.testing.assert_array_equal(one["input_ids"][0], whole["input_ids"][k])
    a.set_epoch(1)
    assert not np.array_equal(a.batch(list(range(40)))["input_ids"], whole["input_ids"])


# --- the exact laws ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "noise, lam", [(0, 3.5), (1, 3.5), (2, 0.5), (7, 3.5), (31, 3.5), (40, 0.2), (60, 12.0)]
)
def test_laws_are_distributions(noise: int, lam: float) -> None:
    count = law.span_count_pmf(noise, lam)
    lengths = law.span_length_expected(noise, lam)
    assert count.sum() == pytest.approx(1.0, abs=1e-12)
    # Every row's spans cover N tokens, and there are E[j] spans on average.
    assert (np.arange(noise + 1) * lengths).sum() == pytest.approx(noise, rel=1e-12, abs=1e-12)
    assert lengths.sum() == pytest.approx((np.arange(noise + 1) * count).sum(), rel=1e-12)
    if noise:
        assert count[0] == 0  # at least one span (at most N: the support ends there)
    assert law.gap_pmf(10, 3).sum() == pytest.approx(1.0)
    assert law.poisson_pmf(lam).sum() == pytest.approx(1.0)


def test_law_of_span_counts_by_simulation() -> None:
    """The DP against a plain simulation of the rule (not the core)."""
    rng = np.random.default_rng(1)
    noise, lam, reps = 9, 1.5, 40_000
    counts = np.zeros(noise + 1, dtype=np.int64)
    for _ in range(reps):
        total, j = 0, 0
        while True:
            x = rng.poisson(lam)
            j += 1
            if total + x >= noise or j == noise:
                break
            total += x
        counts[j] += 1
    fit = ul2.stats.chisquare(counts, law.span_count_pmf(noise, lam))
    assert fit.pvalue > 1e-3, fit


@pytest.mark.parametrize(
    "length, r, lam, prefix",
    [
        (100, 0.3, 3.5, ()),
        (510, 0.3, 3.5, (7, 8)),
        (64, 0.15, 1.0, ()),
        (40, 0.8, 6.0, (9,)),
        (30, 0.5, 0.3, ()),
    ],
)
def test_examples_follow_the_laws(length: int, r: float, lam: float, prefix: tuple[int, ...]) -> None:
    d = ul2.TextInfilling(r, lam, mask_id=MASK, prefix=prefix)
    s = law.measure_infilling(d, raw_length=length, samples=3000, seed=11)
    assert s.mismatches == []
    assert s.samples == 3000
    for fit in (s.masks_fit, s.leading_gap_fit, s.span_length_fit):
        assert fit.pvalue > 1e-3, fit


def test_noise_tokens_matches_the_core() -> None:
    for length in [0, 1, 2, 10, 99, 100, 200, 511, 4097]:
        for r in [0.0, 0.15, 0.3, 0.5, 1.0]:
            spans, gaps = ul2._ul2._infill_layout(length, r, 3.5, seed=0, key=length)
            assert int(spans.sum()) == law.noise_tokens(length, r)
            assert int(gaps.sum()) == length - law.noise_tokens(length, r)
            assert len(gaps) == len(spans) + 1


# --- fairseq's DenoisingDataset, by distribution ----------------------------------------------

FAIRSEQ_LENGTH = 510  # a 512-token block: BOS, 510 tokens, EOS
FAIRSEQ_ROWS = 4000


@pytest.fixture(scope="module")
def fairseq_vs_ul2() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    f_masks, f_masked, f_spans, f_j = [], [], [], []
    for _ in range(FAIRSEQ_ROWS):
        masks, masked, drawn, _ = law.fairseq_add_whole_word_mask(FAIRSEQ_LENGTH, 0.3, 3.5, rng)
        f_masks.append(masks)
        f_masked.append(masked)
        f_spans.append(drawn)
        f_j.append(len(drawn))
    u_masks, u_spans = [], []
    for key in range(FAIRSEQ_ROWS):
        spans, _ = ul2._ul2._infill_layout(FAIRSEQ_LENGTH, 0.3, 3.5, seed=7, key=key)
        u_masks.append(len(spans))
        u_spans.append(spans.astype(np.int64))
    return {
        "f_masks": np.array(f_masks),
        "f_masked": np.array(f_masked),
        "f_spans": np.concatenate(f_spans),
        "f_j": np.array(f_j),
        "u_masks": np.array(u_masks),
        "u_spans": np.concatenate(u_spans),
    }


def _two_sample(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square p-value that two samples of small non-negative ints share one law."""
    scipy_stats = pytest.importorskip("scipy.stats")
    size = int(max(a.max(), b.max())) + 1
    table = np.stack([np.bincount(a, minlength=size), np.bincount(b, minlength=size)]).astype(float)
    # Pool the sparse tail so every expected cell holds at least 5.
    cols, acc = [], np.zeros(2)
    for c in table.T:
        acc = acc + c
        if acc.sum() >= 10 * 5:
            cols.append(acc)
            acc = np.zeros(2)
    if acc.sum():
        cols[-1] = cols[-1] + acc
    return float(scipy_stats.chi2_contingency(np.array(cols).T)[1])


def test_fairseq_counts_its_budget_as_ul2() -> None:
    # num_to_mask = ceil(f32(W) * f32(0.3)) with W = 510 interior tokens: ul2's N.
    assert law.noise_tokens(FAIRSEQ_LENGTH, 0.3) == 153
    _, _, drawn, _ = law.fairseq_add_whole_word_mask(FAIRSEQ_LENGTH, 0.3, 3.5, np.random.default_rng(0))
    assert drawn.sum() == 153
    assert (
        law.noise_tokens(100, 0.3)
        == 31
        == law.fairseq_add_whole_word_mask(100, 0.3, 3.5, np.random.default_rng(0))[2].sum()
    )


def test_fairseq_span_lengths_and_counts_match(fairseq_vs_ul2: dict[str, np.ndarray]) -> None:
    """The draws are one law: span lengths (inserts and the cut last span included) and the
    number of spans per row, by two-sample chi-square and KS."""
    scipy_stats = pytest.importorskip("scipy.stats")
    r = fairseq_vs_ul2
    assert _two_sample(r["f_spans"], r["u_spans"]) > 1e-3
    assert _two_sample(r["f_j"], r["u_masks"]) > 1e-3
    assert scipy_stats.ks_2samp(r["f_j"], r["u_masks"]).pvalue > 1e-3
    # And both against the exact law.
    expected = law.span_length_expected(153, 3.5)
    f = ul2.stats.fit.fit_histogram(np.bincount(r["f_spans"]), expected / expected.sum())
    assert f.pvalue > 1e-3, f


def test_fairseq_masks_fewer_tokens_in_fewer_masks(fairseq_vs_ul2: dict[str, np.ndarray]) -> None:
    """The deliberate difference: fairseq's spans overlap (starts drawn independently, a
    start inside another span is deleted with it), so it masks fewer than N tokens and merges
    spans; ul2 masks exactly N in exactly j masks."""
    scipy_stats = pytest.importorskip("scipy.stats")
    r = fairseq_vs_ul2
    f_fraction = r["f_masked"].mean() / FAIRSEQ_LENGTH
    assert f_fraction < 153 / FAIRSEQ_LENGTH - 0.01  # ul2's is exactly 153/510 = 0.3
    assert 0.25 < f_fraction < 0.29
    assert r["f_masks"].mean() < r["u_masks"].mean()
    assert scipy_stats.ks_2samp(r["f_masks"], r["u_masks"]).pvalue < 1e-6
