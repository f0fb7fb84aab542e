"""ul2.stats: the exact laws, the goodness-of-fit machinery, and measured mixtures (fixed seeds,
so every p-value here is deterministic)."""

from __future__ import annotations

import json
import math
from math import comb
from pathlib import Path

import numpy as np
import pytest
import ul2
from ul2 import stats

P_MIN = 1e-3


def test_composition_pmf_is_the_uniform_composition_law() -> None:
    # Reference §2: K=85, m=28: P(1)=.321, P(2)=.221, P(3)=.151, P(4)=.102.
    pmf = stats.composition_pmf(85, 28)
    np.testing.assert_allclose(pmf[1:5], [0.321, 0.221, 0.151, 0.102], atol=5e-4)
    assert pmf.sum() == pytest.approx(1.0)
    assert (np.arange(86) * pmf).sum() == pytest.approx(85 / 28)
    assert pmf[0] == 0 and pmf[85 - 28 + 2 :].sum() == 0
    # Small case by enumeration: compositions of 6 into 3 parts.
    comps = [(a, b, 6 - a - b) for a in range(1, 5) for b in range(1, 5) if 6 - a - b >= 1]
    first = np.bincount([c[0] for c in comps], minlength=7) / len(comps)
    np.testing.assert_allclose(stats.composition_pmf(6, 3), first)
    assert stats.composition_pmf(9, 1).tolist() == [0] * 9 + [1.0]
    assert comb(5, 2) == len(comps)


def test_prefix_bounds_follow_t5_and_the_library() -> None:
    # The Rust core's own vectors (prefix.rs).
    assert stats.prefix_bounds(511, 0.5) == (1, 510)
    assert stats.prefix_bounds(511, 0.25) == (255, 510)
    assert stats.prefix_bounds(2, 0.5) == (1, 1)
    assert stats.prefix_bounds(1, 0.5) == (0, 0)
    # The library's splits stay inside and reach both ends.
    for length, r in ((9, 0.25), (20, 0.4), (7, 0.05)):
        lo, hi = stats.prefix_bounds(length, r)
        ks = {ul2.prefix_split(length, r, seed=5, key=k) for k in range(400)}
        assert ks == set(range(lo, hi + 1)), (length, r)


def test_builtin_chi_square_survival_matches_scipy() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 7, 30, 233):
        for x in (0.01, 0.5, 1.0, dof * 0.5, float(dof), dof + 3 * math.sqrt(2 * dof), 4.0 * dof + 20):
            want = float(scipy_stats.chi2.sf(x, dof))
            got = stats.gammaincc(dof / 2, x / 2)
            assert got == pytest.approx(want, rel=1e-9, abs=1e-14), (dof, x)


def test_chisquare_pools_small_bins_and_flags_impossible_values() -> None:
    pmf = stats.composition_pmf(40, 8)
    rng = np.random.default_rng(0)
    draws = rng.choice(len(pmf), size=5000, p=pmf)
    fit = stats.chisquare(np.bincount(draws, minlength=len(pmf)), pmf)
    assert fit.pvalue > P_MIN and fit.bins < len(pmf) and fit.dof == fit.bins - 1
    # The wrong law is rejected (the test has power).
    wrong = stats.composition_pmf(40, 10)
    assert stats.chisquare(np.bincount(draws, minlength=len(pmf)), wrong).pvalue < 1e-6
    # A value the law cannot produce: p = 0.
    counts = np.zeros(len(pmf))
    counts[1] = 10
    counts[39] = 1
    outside = stats.chisquare(counts, pmf)
    assert outside.pvalue == 0.0 and outside.method == "outside support"
    # A single-point law observed exactly.
    point = stats.chisquare([0, 0, 7], [0, 0, 1])
    assert point.pvalue == 1.0 and point.method == "exact"
    with pytest.raises(ValueError, match="shape"):
        stats.chisquare([1, 2], [1.0])


def test_without_scipy_the_builtin_p_value_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.stats", None)
    p, method = stats.chi2_sf(10.0, 2)
    assert method == "chi-square (built-in gamma)"
    assert p == pytest.approx(math.exp(-5), rel=1e-12)  # chi2(2).sf(x) = exp(-x/2)
    p, _ = stats.chi2_sf(3.0, 4)
    assert p == pytest.approx(math.exp(-1.5) * 2.5, rel=1e-12)  # chi2(4).sf(x) = exp(-x/2)(1 + x/2)
    fit = stats.chisquare([30, 20, 50], [0.3, 0.3, 0.4])
    assert fit.method == "chi-square (built-in gamma)" and 0 < fit.pvalue < 1


def test_ul2_mixture_matches_the_exact_laws() -> None:
    sentinels = ul2.Sentinels.t5(32128, 100, on_overflow="cap")
    mix = ul2.presets.ul2(prompts={"[NLU]": [5, 6], "[NLG]": [7], "[S2S]": [8, 9, 10]})
    st = stats.measure(mix, sentinels=sentinels, inputs_length=256, targets_length=256, samples=2100, seed=11)
    table = ul2.plan(mix, sentinels=sentinels, inputs_length=256, targets_length=256)
    assert st.samples == 2100 and int(st.denoiser_counts.sum()) == 2100
    for d, row in zip(st.denoisers, table, strict=True):
        assert d.mismatches == []
        assert d.raw_length == row.raw_length and d.samples > 200
        if isinstance(d.denoiser, ul2.SpanCorruption):
            n_tokens, n_spans = ul2.span_counts(
                row.raw_length, d.denoiser.noise_density, d.denoiser.mean_span_length
            )
            assert d.noise_tokens == n_tokens and d.spans == row.spans == n_spans
            # Deterministic counts are exact, not just close.
            assert d.noise_density_observed == pytest.approx(n_tokens / row.raw_length, abs=1e-12)
            assert d.spans_observed == row.spans
            assert (
                d.span_length_counts is not None and int(d.span_length_counts.sum()) == d.samples * row.spans
            )
            assert d.span_length_fit is not None and d.span_length_fit.pvalue > P_MIN
            assert d.nonnoise_length_fit is not None and d.nonnoise_length_fit.pvalue > P_MIN
        else:
            assert d.prefix_bounds == stats.prefix_bounds(row.raw_length, 0.5)
            assert d.prefix_fit is not None and d.prefix_fit.pvalue > P_MIN
            lo, hi = d.prefix_bounds
            assert d.prefix_mean_observed is not None and lo <= d.prefix_mean_observed <= hi
    assert st.rates_fit.pvalue > P_MIN
    assert st.min_pvalue > P_MIN
    text = str(st)
    assert "span-length law" in text and "denoiser rates" in text and "uniform on [1," in text
    json.dumps(st.to_dict())


def test_measured_span_lengths_reject_a_wrong_law() -> None:
    sentinels = ul2.Sentinels.t5(1000, 100)
    st = stats.measure(ul2.presets.t5(), sentinels=sentinels, inputs_length=128, samples=600, seed=2)
    (d,) = st.denoisers
    assert d.span_length_counts is not None and d.noise_tokens is not None and d.spans is not None
    assert (
        stats.chisquare(d.span_length_counts, stats.composition_pmf(d.noise_tokens, d.spans)).pvalue > P_MIN
    )
    wrong = stats.composition_pmf(d.noise_tokens, d.spans - 2)
    assert stats.chisquare(d.span_length_counts, wrong).pvalue < 1e-6


def test_decoder_only_budget_rates_and_causal_lm() -> None:
    sentinels = ul2.Sentinels.t5(1000, 100)
    mix = ul2.Mixture(
        [
            (ul2.CausalLM(prefix=(3, 4)), 3.0),
            (ul2.PrefixLM(0.25), 1.0),
            (ul2.SpanCorruption(8, 0.3, random_roll=True), 1.0),
        ]
    )
    st = stats.measure(mix, sentinels=sentinels, sequence_length=200, samples=1500, seed=4)
    causal, prefix, rolled = st.denoisers
    assert causal.rate == pytest.approx(0.6) and causal.prefix_bounds == (0, 0)
    assert causal.prefix_fit is not None and causal.prefix_fit.method == "exact"
    assert prefix.prefix_fit is not None and prefix.prefix_fit.pvalue > P_MIN
    # A random roll changes the span-length law: counted, not tested; noise count still exact.
    assert rolled.span_length_fit is None and rolled.mismatches == []
    assert rolled.noise_density_observed == pytest.approx(rolled.noise_density_exact)
    assert st.rates_fit.pvalue > P_MIN
    assert all(d.mismatches == [] for d in st.denoisers)


def test_num_spans_and_given_tokens() -> None:
    sentinels = ul2.Sentinels.t5(500, 50)
    mix = ul2.SpanCorruption(3, 0.2, num_spans=4)
    tokens = np.random.default_rng(1).integers(3, 400, 40_000).astype(np.int32)
    st = stats.measure(mix, sentinels=sentinels, inputs_length=100, samples=10_000, tokens=tokens, seed=1)
    (d,) = st.denoisers
    assert st.samples == len(tokens) // d.raw_length  # all the stream holds
    assert d.spans == 4 and d.spans_observed == 4 and d.mismatches == []
    assert d.span_length_fit is not None and d.span_length_fit.pvalue > P_MIN
    assert "40,000 given tokens" in st.source
    with pytest.raises(ValueError, match="too few"):
        stats.measure(mix, sentinels=sentinels, inputs_length=100, tokens=tokens[:50])
    with pytest.raises(ValueError, match="samples=0"):
        stats.measure(mix, sentinels=sentinels, inputs_length=100, samples=0)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    image = pytest.importorskip("matplotlib.image")
    path = tmp_path / "laws.png"
    st = stats.measure(
        ul2.presets.ul2r(), sentinels=ul2.Sentinels.t5(1000, 100), sequence_length=256, samples=300
    )
    assert stats.plot(st, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.imread(path).shape[2] in (3, 4)


def test_fim_laws_are_the_sorted_pair_law() -> None:
    # By enumeration of the (L+1)^2 equally likely pairs of draws.
    for L in (0, 1, 5, 12):
        pairs = [(min(x, y), max(x, y)) for x in range(L + 1) for y in range(L + 1)]
        total = len(pairs)
        prefix = np.bincount([a for a, _ in pairs], minlength=L + 1) / total
        middle = np.bincount([b - a for a, b in pairs], minlength=L + 1) / total
        suffix = np.bincount([L - b for _, b in pairs], minlength=L + 1) / total
        np.testing.assert_allclose(stats.fim_end_pmf(L), prefix)
        np.testing.assert_allclose(stats.fim_end_pmf(L), suffix)
        np.testing.assert_allclose(stats.fim_middle_pmf(L), middle)
        empty = sum(a == 0 for a, _ in pairs) / total
        assert stats.fim_spm_seen(L, 0.3) == pytest.approx(0.3 + 0.7 * empty)
    assert stats.fim_spm_seen(9, 1.0) == 1.0


def test_fim_in_a_ul2_mixture_matches_its_laws() -> None:
    sentinels = ul2.Sentinels.t5(32128, 100)
    mix = ul2.presets.ul2()
    fims = [
        ul2.FillInTheMiddle(32000, 32001, 32002, loss="middle", prefix=(5,)),
        ul2.FillInTheMiddle(32000, 32001, 32002, spm_rate=0.2),
    ]
    mixture = ul2.Mixture([*mix.entries, (fims[0], 4.0), (fims[1], 4.0)])
    for lengths in ({"sequence_length": 64}, {"inputs_length": 64, "targets_length": 64}):
        st = stats.measure(mixture, sentinels=sentinels, samples=6000, seed=5, **lengths)  # type: ignore[arg-type]
        assert st.min_pvalue > P_MIN, str(st)
        assert all(d.mismatches == [] for d in st.denoisers), str(st)
        for d in st.denoisers[len(mix) :]:
            assert d.samples > 1500
            assert d.fim_suffix_fit is not None and d.fim_spm_seen_fit is not None
            target_middle = "inputs_length" in lengths or d.denoiser.loss == "middle"  # type: ignore[union-attr]
            assert (d.fim_prefix_fit is not None) == target_middle
            assert (d.fim_middle_fit is not None) == target_middle
            assert (d.fim_spm_fit is not None) == target_middle
        text = str(st)
        assert "suffix law" in text and "<pre> <suf> rows" in text


def test_measured_fim_pieces_reject_a_wrong_law() -> None:
    sentinels = ul2.Sentinels.t5(1000, 100)
    d = ul2.FillInTheMiddle(897, 898, 899, loss="middle", spm_rate=0.5)
    st = stats.measure(d, sentinels=sentinels, sequence_length=40, samples=3000, seed=1)
    (fim,) = st.denoisers
    assert fim.fim_suffix_counts is not None and fim.fim_suffix_fit is not None
    assert fim.fim_suffix_fit.pvalue > P_MIN and fim.fim_spm_fit is not None
    L = fim.raw_length
    uniform = np.full(L + 1, 1 / (L + 1))  # one uniform cut would give this
    assert stats.chisquare(fim.fim_suffix_counts, uniform).pvalue < 1e-6


def test_text_infilling_in_a_ul2_mixture_matches_its_laws() -> None:
    """``measure`` reads text infilling's rows back in both families: N masked tokens, targets
    the raw row, the masks per row and the clean tokens before the first mask fitted to their
    exact laws; a wrong law for the masks is rejected."""
    sentinels = ul2.Sentinels.t5(32128, 100)
    mix = ul2.presets.ul2()
    bart = ul2.TextInfilling(0.3, 3.5, mask_id=32000, prefix=(5,))
    mixture = ul2.Mixture([*mix.entries, (bart, 8.0)])
    for lengths in ({"sequence_length": 96}, {"inputs_length": 64, "targets_length": 64}):
        st = stats.measure(mixture, sentinels=sentinels, samples=5000, seed=3, **lengths)  # type: ignore[arg-type]
        assert st.min_pvalue > P_MIN, str(st)
        assert all(d.mismatches == [] for d in st.denoisers), str(st)
        d = st.denoisers[-1]
        assert d.samples > 2000 and d.infill_mask_counts is not None
        assert d.infill_masks_fit is not None and d.infill_leading_fit is not None
        assert "masks per row" in str(st) and "clean before 1st mask" in str(st)
        # Spans of Poisson(1) instead of (3.5) would give more masks per row.
        N = stats.infilling.noise_tokens(d.raw_length, 0.3)
        wrong = stats.infilling.span_count_pmf(N, 1.0)
        counts = d.infill_mask_counts
        assert stats.chisquare(counts, np.pad(wrong, (0, len(counts) - len(wrong)))).pvalue < 1e-6
