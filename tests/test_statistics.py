"""SPEC §8.2: the random parts follow their laws. Goodness-of-fit tests with fixed seeds (so
they are deterministic), plus exact expected values.

Span lengths are a uniformly random composition of K tokens into m parts, so
P(len = j) = C(K-j-1, m-2) / C(K-1, m-1) (reference §2); prefix splits are uniform on
[lo, L-1] (reference §6.1); denoisers are drawn with probability rate / sum(rates).
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest
import ul2
from scipy import stats
from ul2.stats import composition_pmf

P_MIN = 1e-3
SEED = 20240611


def pooled_chisquare(observed: np.ndarray, expected: np.ndarray) -> float:
    """Chi-square p-value, the bins from the first one with expected count < 5 on (the pmf is
    decreasing, so that is the tail) pooled into one."""
    observed = np.asarray(observed, dtype=float)
    expected = np.asarray(expected, dtype=float)
    small = np.flatnonzero(expected < 5)
    cut = int(small[0]) if small.size else len(expected)
    obs = [*observed[:cut], observed[cut:].sum()]
    exp = [*expected[:cut], expected[cut:].sum()]
    if exp[-1] < 5:  # fold a still-small tail into its neighbour
        obs[-2] += obs.pop()
        exp[-2] += exp.pop()
    obs_a, exp_a = np.array(obs), np.array(exp)
    assert len(obs_a) >= 2 and obs_a.sum() == pytest.approx(exp_a.sum())
    return float(stats.chisquare(obs_a, exp_a * obs_a.sum() / exp_a.sum()).pvalue)


def span_lengths(
    length: int, r: float, mu: float, keys: range, seed: int = SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(noise lengths, non-noise lengths), one row per key, in mask order."""
    noise, clean = [], []
    for key in keys:
        mask = ul2.noise_mask(length, r, mu, seed=seed, key=key)
        starts = np.flatnonzero(np.concatenate([[True], mask[1:] != mask[:-1]]))
        lens = np.diff(np.concatenate([starts, [length]]))
        assert not mask[0]  # runs alternate clean, noise, clean, ...
        clean.append(lens[0::2])
        noise.append(lens[1::2])
    return np.array(noise), np.array(clean)


# (L, r, mu) and the (K, m) of the noise and non-noise compositions.
SPAN_CASES = {
    "R(3,.15)@568": ((568, 0.15, 3.0), (85, 28), (483, 28), 3000),
    "X(64,.5)@1006": ((1006, 0.5, 64.0), (503, 8), (503, 8), 3000),
}


@pytest.mark.parametrize("case", sorted(SPAN_CASES))
def test_span_length_law(case: str) -> None:
    (length, r, mu), (k_noise, m), (k_clean, m_clean), n_keys = SPAN_CASES[case]
    assert ul2.span_counts(length, r, mu) == (k_noise, m) and m_clean == m
    noise, clean = span_lengths(length, r, mu, range(n_keys))
    assert noise.shape == clean.shape == (n_keys, m)
    for lens, total in ((noise, k_noise), (clean, k_clean)):
        pmf = composition_pmf(total, m)  # the law itself is checked in test_stats.py
        # The realised mean is exactly K/m (the counts are deterministic).
        assert Fraction(int(lens.sum()), lens.size) == Fraction(total, m)
        # Pooled over all spans (conservative: spans of one mask are negatively correlated).
        counts = np.bincount(lens.ravel(), minlength=total + 1)
        assert pooled_chisquare(counts[1:], pmf[1:] * lens.size) > P_MIN
        # Each position has the same marginal law (spans are exchangeable): the first and the
        # last span, one per mask, so the keys are independent samples.
        for pos in (0, m - 1):
            col = np.bincount(lens[:, pos], minlength=total + 1)
            assert pooled_chisquare(col[1:], pmf[1:] * n_keys) > P_MIN
            # Exact expected value K/m, within 4 standard errors.
            mean = (np.arange(total + 1) * pmf).sum()
            var = (np.arange(total + 1) ** 2 * pmf).sum() - mean**2
            assert mean == pytest.approx(total / m)
            assert abs(lens[:, pos].mean() - total / m) < 4 * np.sqrt(var / n_keys)


def test_law_at_t5_default_matches_reference_numbers() -> None:
    # Reference §2: for K=85, m=28, P(1)=.321, P(2)=.221, P(3)=.151, P(4)=.102; observed
    # frequencies over 3000 masks (84000 spans) land within 0.01 of them.
    noise, _ = span_lengths(568, 0.15, 3.0, range(3000), seed=SEED + 1)
    freq = np.bincount(noise.ravel(), minlength=5)[1:5] / noise.size
    np.testing.assert_allclose(freq, [0.321, 0.221, 0.151, 0.102], atol=0.01)


def test_all_compositions_equally_likely() -> None:
    # Length 20, r=.5, 4 spans: N = 10 noise and M = 10 non-noise tokens, each split into 4
    # positive parts; all C(9, 3) = 84 compositions must be equally likely.
    comps = list(itertools.product(range(1, 8), repeat=4))
    comps = [c for c in comps if sum(c) == 10]
    assert len(comps) == 84
    index = {c: i for i, c in enumerate(comps)}
    n_keys = 84 * 80
    noise_counts = np.zeros(84)
    clean_counts = np.zeros(84)
    for key in range(n_keys):
        mask = ul2.noise_mask(20, 0.5, num_spans=4, seed=SEED, key=key)
        starts = np.flatnonzero(np.concatenate([[True], mask[1:] != mask[:-1]]))
        lens = np.diff(np.concatenate([starts, [20]]))
        assert len(lens) == 8 and not mask[0]
        clean_counts[index[tuple(lens[0::2].tolist())]] += 1
        noise_counts[index[tuple(lens[1::2].tolist())]] += 1
    assert stats.chisquare(noise_counts).pvalue > P_MIN
    assert stats.chisquare(clean_counts).pvalue > P_MIN
    # The two compositions are drawn independently: first noise vs first non-noise length.
    first = np.zeros((7, 7))
    for key in range(0, n_keys, 2):  # a subsample is enough, and keeps the test fast
        mask = ul2.noise_mask(20, 0.5, num_spans=4, seed=SEED + 7, key=key)
        starts = np.flatnonzero(np.concatenate([[True], mask[1:] != mask[:-1]]))
        lens = np.diff(np.concatenate([starts, [20]]))
        first[lens[0] - 1, lens[1] - 1] += 1
    # Pool the rare long spans (P(len >= 5) is small) before testing independence.
    pooled = np.concatenate([first[:4], first[4:].sum(axis=0, keepdims=True)])
    pooled = np.concatenate([pooled[:, :4], pooled[:, 4:].sum(axis=1, keepdims=True)], axis=1)
    assert stats.chi2_contingency(pooled).pvalue > P_MIN


@pytest.mark.parametrize(
    ("length", "r", "lo"), [(51, 0.5, 1), (51, 0.25, 25), (511, 0.25, 255), (200, 0.1, 159)]
)
def test_prefix_split_uniform(length: int, r: float, lo: int) -> None:
    # lo = min(L-1, max(1, round_f32((1-2r)(L-1)))); reference §6.1.
    expected_lo = min(length - 1, max(1, int(np.round(np.float32(1 - 2 * r) * np.float32(length - 1)))))
    assert expected_lo == lo
    hi = length - 1
    n_bins = hi - lo + 1
    n_keys = 40 * n_bins
    ks = np.array([ul2.prefix_split(length, r, seed=SEED, key=k) for k in range(n_keys)])
    assert ks.min() >= lo and ks.max() <= hi
    counts = np.bincount(ks - lo, minlength=n_bins)
    assert stats.chisquare(counts).pvalue > P_MIN
    # Exact expected value (lo + hi) / 2 within 4 standard errors.
    sd = np.sqrt((n_bins**2 - 1) / 12)
    assert abs(ks.mean() - (lo + hi) / 2) < 4 * sd / np.sqrt(n_keys)


def test_roll_offset_is_uniform() -> None:
    # With n = 1 (L=40, r=.25, mu=64) the 10 noise tokens form one block; the roll moves its
    # end to a uniform position in [0, L).
    length = 40
    ends = np.zeros(length)
    for key in range(40 * length):
        mask = ul2.noise_mask(length, 0.25, 64.0, random_roll=True, seed=SEED, key=key)
        assert int(mask.sum()) == 10
        # The last noise position, read cyclically: noise followed by non-noise.
        (last,) = np.flatnonzero(mask & ~np.roll(mask, -1))
        ends[last] += 1
    assert stats.chisquare(ends).pvalue > P_MIN


RATES = (1.0, 2.0, 3.0, 4.0, 0.5)
MIXTURE = ul2.Mixture(
    [
        (ul2.SpanCorruption(3.0, 0.15, prefix=(10,)), RATES[0]),
        (ul2.SpanCorruption(8.0, 0.5, prefix=(11,)), RATES[1]),
        (ul2.PrefixLM(0.5, prefix=(12,)), RATES[2]),
        (ul2.CausalLM(prefix=(13,)), RATES[3]),
        (ul2.SpanCorruption(64.0, 0.15, prefix=(14,), random_roll=True), RATES[4]),
    ]
)


@pytest.mark.parametrize("fmt", ["hf", "seqio"])
def test_denoiser_frequencies_match_rates(fmt: str) -> None:
    sentinels = ul2.Sentinels.t5(1000)
    collator = ul2.Collator(MIXTURE, sentinels=sentinels, inputs_length=32, seed=SEED, format=fmt)
    first = "input_ids" if fmt == "hf" else "encoder_input_tokens"
    n = 20000
    rows = np.random.default_rng(SEED).integers(20, 900, size=(n, 8)).astype(np.int32)
    out = collator(rows, keys=np.arange(n))
    prompt = out[first][:, 0]
    assert set(np.unique(prompt).tolist()) <= {10, 11, 12, 13, 14}
    counts = np.bincount(prompt - 10, minlength=len(RATES))
    expected = n * np.array(RATES) / sum(RATES)
    assert stats.chisquare(counts, expected).pvalue > P_MIN


def test_denoiser_choice_is_keyed_not_positional() -> None:
    # The same keys in another order pick the same denoisers (the draw depends on (seed, key)).
    sentinels = ul2.Sentinels.t5(1000)
    collator = ul2.Collator(MIXTURE, sentinels=sentinels, inputs_length=32, seed=SEED)
    rows = np.full((500, 8), 20, dtype=np.int32)
    keys = np.arange(500)
    a = collator(rows, keys=keys)["input_ids"][:, 0]
    b = collator(rows, keys=keys[::-1].copy())["input_ids"][:, 0]
    np.testing.assert_array_equal(a, b[::-1])
    # A different seed is a different draw.
    other = ul2.Collator(MIXTURE, sentinels=sentinels, inputs_length=32, seed=SEED + 1)
    assert not np.array_equal(other(rows, keys=keys)["input_ids"][:, 0], a)
