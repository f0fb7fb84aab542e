"""Empirical vs exact statistics of a mixture's examples, with goodness-of-fit p-values.

``measure(mixture, sentinels=..., inputs_length=...)`` denoises ``samples`` examples of a token
stream (a synthetic one by default, or yours) with ``DenoisingDataset``, reads every example's
spans back out of its inputs and targets, and sets them against the exact laws:

- span corruption at raw length ``L``: exactly ``N`` noise tokens in ``n`` spans, where
  ``(N, n) = span_counts(L, r, mu)`` (``n`` from the plan, so ``num_spans`` and
  ``on_overflow="cap"`` count); noise span lengths follow the uniform-composition law
  ``P(len = j) = C(N-j-1, n-2) / C(N-1, n-1)``, non-noise spans the same law for ``L - N``;
- prefix LM: the split ``k`` (inputs without prompt and EOS) is uniform on ``[lo, L-1]`` with
  ``lo = min(L-1, max(1, round_f32((1 - 2 r)(L-1))))``;
- causal LM: inputs hold only the prompt, targets all ``L`` tokens;
- denoiser ``i`` is drawn with probability ``rate_i / sum(rates)``.

Goodness of fit is Pearson's chi-square, with neighbouring bins pooled until each expects at
least 5 observations; the p-value comes from ``scipy.stats.chi2.sf`` when SciPy is installed,
else from the regularized upper incomplete gamma function computed here (series and continued
fraction, Numerical Recipes' ``gammq``; agrees with SciPy to ~1e-12). An observation outside the
law's support gives p = 0. Spans of one example are not independent (their lengths sum to
``N``); this makes the pooled test on all spans conservative (p-values too high, never too low).
Random-roll denoisers get counts but no span-length test (a span cut by the wrap changes the law).

NumPy only; ``plot`` imports matplotlib when called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _ul2
from .dataset import DenoisingDataset
from .denoisers import CausalLM, Denoiser, Mixture, PrefixLM, SpanCorruption, as_mixture
from .plan import plan

MIN_EXPECTED = 5.0
LAWS = (
    "span-length law: P(len = j) = C(N-j-1, n-2) / C(N-1, n-1) for N tokens in n spans (a uniform "
    "composition; non-noise spans likewise); prefix law: uniform on [lo, L-1]; "
    "p-values: chi-square goodness of fit"
)


# --- Exact laws ----------------------------------------------------------------------------


def composition_pmf(total: int, parts: int) -> npt.NDArray[np.float64]:
    """``pmf[j]`` = P(a part has length ``j``) when ``total`` tokens are split into ``parts``
    positive parts uniformly at random: ``C(total-j-1, parts-2) / C(total-1, parts-1)``."""
    pmf = np.zeros(total + 1)
    if parts <= 0 or total < parts:
        return pmf
    if parts == 1:
        pmf[total] = 1.0
        return pmf
    denom = comb(total - 1, parts - 1)
    for j in range(1, total - parts + 2):
        pmf[j] = comb(total - j - 1, parts - 2) / denom
    return pmf


def prefix_bounds(length: int, suffix_density: float) -> tuple[int, int]:
    """``(lo, hi)`` of T5's prefix-LM split of a row of ``length`` tokens (float32 arithmetic)."""
    if length <= 1:
        return (0, 0)
    hi = length - 1
    scaled = np.float32(np.float32(1.0) - np.float32(2.0) * np.float32(suffix_density)) * np.float32(hi)
    lo = max(int(np.rint(scaled)), 0) if np.isfinite(scaled) else 0
    return (min(hi, max(lo, 1)), hi)


# --- Goodness of fit -----------------------------------------------------------------------


def _gammaincc(a: float, x: float) -> float:
    """Regularized upper incomplete gamma Q(a, x)."""
    if x <= 0:
        return 1.0
    log_front = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:  # series for P(a, x)
        ap, term = a, 1.0 / a
        total = term
        for _ in range(100_000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return max(0.0, 1.0 - total * math.exp(log_front))
    tiny = 1e-300  # continued fraction for Q(a, x) (modified Lentz)
    b = x + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return math.exp(log_front) * h


def chi2_sf(statistic: float, dof: int) -> tuple[float, str]:
    """Survival function of the chi-square law, and which implementation gave it."""
    try:
        from scipy.stats import chi2  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        return _gammaincc(dof / 2, statistic / 2), "chi-square (built-in gamma)"
    return float(chi2.sf(statistic, dof)), "chi-square (scipy)"


@dataclass(frozen=True)
class GoodnessOfFit:
    """Pearson chi-square of observed counts against a law: ``pvalue`` with ``dof`` degrees of
    freedom over ``bins`` pooled bins. ``method`` says how (``"exact"`` when the law is a single
    point, ``"outside support"`` when something impossible was observed)."""

    statistic: float
    dof: int
    bins: int
    pvalue: float
    method: str


def chisquare(observed: npt.ArrayLike, probabilities: npt.ArrayLike) -> GoodnessOfFit:
    """Chi-square goodness of fit of ``observed`` counts to ``probabilities`` (same bins, summing
    to 1), pooling neighbouring bins until each expects at least 5 observations."""
    obs = np.asarray(observed, dtype=np.float64)
    prob = np.asarray(probabilities, dtype=np.float64)
    if obs.shape != prob.shape:
        raise ValueError(f"observed: shape {obs.shape} differs from probabilities' {prob.shape}")
    total = obs.sum()
    if total <= 0:
        return GoodnessOfFit(math.nan, 0, 0, math.nan, "no observations")
    if np.any((prob <= 0) & (obs > 0)):
        return GoodnessOfFit(math.inf, 0, 0, 0.0, "outside support")
    exp = prob / prob.sum() * total
    groups_o: list[float] = []
    groups_e: list[float] = []
    o = e = 0.0
    for ob, ex in zip(obs.tolist(), exp.tolist(), strict=True):
        o += ob
        e += ex
        if e >= MIN_EXPECTED:
            groups_o.append(o)
            groups_e.append(e)
            o = e = 0.0
    if o > 0 or e > 0:
        if groups_e:
            groups_o[-1] += o
            groups_e[-1] += e
        else:
            groups_o.append(o)
            groups_e.append(e)
    if len(groups_e) < 2:
        # One bin: the law is (nearly) a single point; it fits iff nothing fell elsewhere.
        return GoodnessOfFit(0.0, 0, len(groups_e), 1.0, "exact")
    go, ge = np.array(groups_o), np.array(groups_e)
    stat = float(((go - ge) ** 2 / ge).sum())
    dof = len(go) - 1
    p, method = chi2_sf(stat, dof)
    return GoodnessOfFit(stat, dof, len(go), p, method)


# --- Measuring ------------------------------------------------------------------------------


@dataclass
class DenoiserStats:
    """Empirical vs exact statistics of one denoiser of the mixture."""

    index: int
    denoiser: Denoiser
    label: str
    rate: float  # expected share of examples
    samples: int
    raw_length: int
    # Span corruption (None otherwise).
    noise_tokens: int | None = None  # exact N
    spans: int | None = None  # planned n
    noise_density_observed: float | None = None
    spans_observed: float | None = None
    mean_span_observed: float | None = None
    span_length_counts: npt.NDArray[np.int64] | None = None  # [j] = spans of length j
    span_length_pmf: npt.NDArray[np.float64] | None = None
    span_length_fit: GoodnessOfFit | None = None
    nonnoise_length_fit: GoodnessOfFit | None = None
    # Prefix LM / causal LM (None otherwise).
    prefix_bounds: tuple[int, int] | None = None
    prefix_counts: npt.NDArray[np.int64] | None = None  # [k] = examples split at k
    prefix_fit: GoodnessOfFit | None = None
    # Checks of deterministic quantities that failed (empty when all hold).
    mismatches: list[str] = field(default_factory=list)

    @property
    def noise_density_exact(self) -> float | None:
        return None if self.noise_tokens is None else self.noise_tokens / self.raw_length

    @property
    def prefix_mean_observed(self) -> float | None:
        if self.prefix_counts is None or self.prefix_counts.sum() == 0:
            return None
        return float(
            (np.arange(len(self.prefix_counts)) * self.prefix_counts).sum() / self.prefix_counts.sum()
        )


@dataclass
class StatRow:
    """One line of the statistics table."""

    denoiser: str
    statistic: str
    empirical: str
    expected: str
    pvalue: float | None = None


@dataclass
class MixtureStats:
    """What ``measure`` found: one ``DenoiserStats`` per denoiser, the denoiser counts and the
    fit of the denoiser rates."""

    mixture: Mixture
    budget: dict[str, int | None]
    samples: int
    seed: int
    source: str
    denoisers: list[DenoiserStats]
    denoiser_counts: npt.NDArray[np.int64]
    rates_fit: GoodnessOfFit

    def rows(self) -> list[StatRow]:
        """The table: per denoiser, each statistic's empirical value, exact value and p-value."""
        out: list[StatRow] = []
        for d in self.denoisers:
            first = d.label
            share = d.samples / max(self.samples, 1)
            out.append(StatRow(first, "share", f"{share:.4f} ({d.samples})", f"{d.rate:.4f}"))
            if d.noise_tokens is not None:
                assert d.spans is not None
                r = d.denoiser.noise_density if isinstance(d.denoiser, SpanCorruption) else math.nan
                out.append(
                    StatRow(
                        "",
                        "noise density",
                        _f(d.noise_density_observed),
                        f"{d.noise_density_exact:.4f} = {d.noise_tokens}/{d.raw_length} (r={r:g})",
                    )
                )
                out.append(StatRow("", "spans", _f(d.spans_observed, 2), str(d.spans)))
                out.append(
                    StatRow(
                        "",
                        "mean span",
                        _f(d.mean_span_observed, 3),
                        f"{d.noise_tokens / max(d.spans, 1):.3f}",
                    )
                )
                if d.span_length_fit is not None:
                    out.append(
                        StatRow(
                            "",
                            "span-length law",
                            f"{_bins(d.span_length_fit)}",
                            f"N={d.noise_tokens}, n={d.spans}",
                            d.span_length_fit.pvalue,
                        )
                    )
                if d.nonnoise_length_fit is not None:
                    out.append(
                        StatRow(
                            "",
                            "non-noise law",
                            f"{_bins(d.nonnoise_length_fit)}",
                            f"N={d.raw_length - d.noise_tokens}, n={d.spans}",
                            d.nonnoise_length_fit.pvalue,
                        )
                    )
            if d.prefix_bounds is not None:
                lo, hi = d.prefix_bounds
                out.append(StatRow("", "prefix mean", _f(d.prefix_mean_observed, 1), f"{(lo + hi) / 2:.1f}"))
                if d.prefix_fit is not None:
                    out.append(
                        StatRow(
                            "",
                            "prefix law",
                            _bins(d.prefix_fit),
                            f"uniform on [{lo}, {hi}]",
                            d.prefix_fit.pvalue,
                        )
                    )
            for m in d.mismatches:
                out.append(StatRow("", "MISMATCH", m, "", 0.0))
        out.append(
            StatRow(
                "mixture",
                "denoiser rates",
                _bins(self.rates_fit),
                "rate / sum(rates)",
                self.rates_fit.pvalue,
            )
        )
        return out

    def __str__(self) -> str:
        head = ("denoiser", "statistic", "empirical", "expected", "p-value")
        body = [(r.denoiser, r.statistic, r.empirical, r.expected, _p(r.pvalue)) for r in self.rows()]
        widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(x, widths, strict=True))
            ).rstrip()
            for x in [head, *body]
        ]
        return "\n".join([*lines, LAWS])

    @property
    def min_pvalue(self) -> float:
        ps = [r.pvalue for r in self.rows() if r.pvalue is not None and not math.isnan(r.pvalue)]
        return min(ps, default=1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mixture": self.mixture.to_dict(),
            "budget": self.budget,
            "samples": self.samples,
            "seed": self.seed,
            "source": self.source,
            "rows": [r.__dict__ for r in self.rows()],
        }


def _f(x: float | None, digits: int = 4) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _p(p: float | None) -> str:
    if p is None:
        return ""
    if math.isnan(p):
        return "n/a"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def _bins(fit: GoodnessOfFit) -> str:
    if fit.method == "exact":
        return "all one value"
    if fit.method == "outside support":
        return "values outside the support"
    return f"chi2={fit.statistic:.1f}, {fit.dof} dof"


def _split(out: dict[str, npt.NDArray[Any]], fmt: str, i: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """(inputs, targets) of row ``i`` of an unpacked "hf" or "decoder" batch."""
    if fmt == "hf":
        n_in = int(out["attention_mask"][i].sum())
        n_t = int(out["decoder_attention_mask"][i].sum())
        return out["input_ids"][i, :n_in], out["labels"][i, :n_t]
    p = int(out["prefix_lengths"][i])
    total = int(out["attention_mask"][i].sum())
    return out["input_ids"][i, :p], out["input_ids"][i, p:total]


def _runs(is_sentinel: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Lengths of the stretches between sentinels (before the first and after the last too)."""
    pos = np.flatnonzero(is_sentinel)
    return np.diff(np.concatenate([[-1], pos, [len(is_sentinel)]])) - 1


def _sentinel_universe(sentinels: _ul2.Sentinels, needed: int) -> npt.NDArray[np.int64]:
    ids = np.asarray(sentinels.ids, dtype=np.int64)
    if needed > len(ids) and sentinels.on_overflow == "t5":
        # T5's policy counts on down into the vocabulary.
        ids = np.concatenate([ids, ids[-1] - 1 - np.arange(needed - len(ids))])
    return ids


def synthetic_tokens(length: int, low_sentinel: int, seed: int = 0) -> npt.NDArray[np.int32]:
    """``length`` uniform token ids in ``[3, low_sentinel)`` (clear of pad/eos/unk and sentinels)."""
    hi = max(int(low_sentinel), 4)
    return np.random.default_rng(seed).integers(3, hi, size=length, dtype=np.int32)


def measure(
    mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
    *,
    sentinels: _ul2.Sentinels,
    inputs_length: int | None = None,
    targets_length: int | None = None,
    sequence_length: int | None = None,
    samples: int = 2000,
    seed: int = 0,
    tokens: npt.ArrayLike | None = None,
    eos_id: int | None = 1,
    pad_id: int = 0,
    source: str | None = None,
) -> MixtureStats:
    """Denoise ``samples`` consecutive examples of ``tokens`` (default: synthetic uniform ids)
    under ``mixture`` and the budget, and compare what they contain with the exact laws.
    ``source`` names the tokens in the report."""
    m = as_mixture(mixture)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples={samples!r}: must be an int >= 1")
    table = plan(
        m,
        sentinels=sentinels,
        inputs_length=inputs_length,
        targets_length=targets_length,
        sequence_length=sequence_length,
        eos=eos_id is not None,
    )
    universe = _sentinel_universe(sentinels, max((r.sentinels for r in table), default=0))
    if tokens is None:
        need = samples * max(r.raw_length for r in table) + 1
        stream: npt.ArrayLike = synthetic_tokens(need, int(universe.min()), seed=seed)
        source = source or f"synthetic uniform ids in [3, {int(universe.min())})"
    else:
        stream = tokens
        source = source or f"{len(np.asarray(tokens)):,} given tokens"
    fmt = "decoder" if sequence_length is not None else "hf"
    ds = DenoisingDataset(
        stream,
        m,
        sentinels=sentinels,
        inputs_length=inputs_length,
        targets_length=targets_length,
        sequence_length=sequence_length,
        format=fmt,
        seed=seed,
        eos_id=eos_id,
        pad_id=pad_id,
    )
    n = min(samples, ds.num_samples)
    if n == 0:
        raise ValueError(f"tokens: {ds.stream_length} tokens are too few for one example of this plan")
    rates = np.array(m.rates, dtype=np.float64)
    probs = rates / rates.sum()
    stats = [
        DenoiserStats(i, d, d.label, float(probs[i]), 0, int(ds.raw_lengths[i]))
        for i, d in enumerate(m.denoisers)
    ]
    noise_lengths: list[list[npt.NDArray[np.int64]]] = [[] for _ in stats]
    clean_lengths: list[list[npt.NDArray[np.int64]]] = [[] for _ in stats]
    noise_totals: list[list[int]] = [[] for _ in stats]
    span_totals: list[list[int]] = [[] for _ in stats]
    splits: list[list[int]] = [[] for _ in stats]
    counts = np.zeros(len(stats), dtype=np.int64)
    eos = 0 if eos_id is None else 1

    for start in range(0, n, 4096):
        keys = np.arange(start, min(n, start + 4096))
        out = ds.batch(keys)
        which = out["denoiser"]
        for i, key in enumerate(keys.tolist()):
            d = int(which[i])
            counts[d] += 1
            st = stats[d]
            lo, hi = ds.span(key)
            if hi - lo != st.raw_length:
                st.mismatches.append(f"example {key}: raw length {hi - lo}, planned {st.raw_length}")
                continue
            inputs, targets = _split(out, fmt, i)
            den = st.denoiser
            core_in = inputs[len(den.prefix) : len(inputs) - eos]
            core_t = targets[: len(targets) - eos]
            if isinstance(den, SpanCorruption):
                noise = _runs(np.isin(core_t, universe))[1:]  # targets start with a sentinel
                if len(noise) and noise[-1] == 0:
                    noise = noise[:-1]  # T5's one extra trailing sentinel (mask ends clean)
                clean = _runs(np.isin(core_in, universe))
                if len(clean) and clean[0] == 0:
                    clean = clean[1:]
                if len(clean) and clean[-1] == 0:
                    clean = clean[:-1]
                noise_lengths[d].append(noise)
                clean_lengths[d].append(clean)
                noise_totals[d].append(int(noise.sum()))
                span_totals[d].append(len(noise))
            else:
                splits[d].append(len(core_in))
                if len(core_in) + len(core_t) != st.raw_length and len(st.mismatches) < 3:
                    st.mismatches.append(
                        f"example {key}: inputs {len(core_in)} + targets {len(core_t)} != raw {st.raw_length}"
                    )

    for d, st in enumerate(stats):
        st.samples = int(counts[d])
        den, row = st.denoiser, table[d]
        L = st.raw_length
        if isinstance(den, SpanCorruption):
            mu = den.mean_span_length if den.num_spans is None else float(L)  # N does not depend on it
            N = _ul2.span_counts(L, den.noise_density, mu)[0]
            st.noise_tokens, st.spans = N, row.spans
            if not st.samples:
                continue
            nt, sp = np.array(noise_totals[d]), np.array(span_totals[d])
            st.noise_density_observed = float(nt.mean() / L)
            st.spans_observed = float(sp.mean())
            st.mean_span_observed = float(nt.sum() / max(sp.sum(), 1))
            if np.any(nt != N) and len(st.mismatches) < 3:
                st.mismatches.append(f"noise tokens {sorted(set(nt.tolist()))[:5]} != exact {N}")
            if not den.random_roll and np.any(sp != row.spans) and len(st.mismatches) < 3:
                st.mismatches.append(f"spans {sorted(set(sp.tolist()))[:5]} != planned {row.spans}")
            lengths = np.concatenate(noise_lengths[d])
            st.span_length_counts = np.bincount(lengths, minlength=N + 1).astype(np.int64)
            st.span_length_pmf = composition_pmf(N, row.spans)
            if not den.random_roll:
                st.span_length_fit = _fit(st.span_length_counts, st.span_length_pmf)
                clean_all = np.concatenate(clean_lengths[d])
                cpmf = composition_pmf(L - N, row.spans)
                st.nonnoise_length_fit = _fit(np.bincount(clean_all, minlength=L - N + 1), cpmf)
        elif isinstance(den, (PrefixLM, CausalLM)):
            lo_hi = prefix_bounds(L, den.suffix_density) if isinstance(den, PrefixLM) else (0, 0)
            st.prefix_bounds = lo_hi
            if not st.samples:
                continue
            ks = np.array(splits[d], dtype=np.int64)
            st.prefix_counts = np.bincount(ks, minlength=L + 1).astype(np.int64)
            law = np.zeros(max(L + 1, len(st.prefix_counts)))
            law[lo_hi[0] : lo_hi[1] + 1] = 1.0
            st.prefix_fit = _fit(st.prefix_counts, law[: len(st.prefix_counts)])
    return MixtureStats(
        mixture=m,
        budget={
            "inputs_length": inputs_length,
            "targets_length": ds.targets_length,
            "sequence_length": sequence_length,
        },
        samples=n,
        seed=seed,
        source=source,
        denoisers=stats,
        denoiser_counts=counts,
        rates_fit=chisquare(counts, probs),
    )


def _fit(counts: npt.ArrayLike, pmf: npt.ArrayLike) -> GoodnessOfFit:
    c = np.asarray(counts, dtype=np.float64)
    p = np.asarray(pmf, dtype=np.float64)
    size = max(len(c), len(p))
    c = np.pad(c, (0, size - len(c)))
    p = np.pad(p, (0, size - len(p)))
    return chisquare(c, p)


# --- Plot -----------------------------------------------------------------------------------


def plot(stats: MixtureStats, path: str | Path, *, title: str | None = None) -> bool:
    """Write a PNG: per span denoiser, the span-length histogram against the exact law; per
    prefix LM, the split histogram against the uniform law; and the denoiser rates. Returns
    ``False`` (writing nothing) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [d for d in stats.denoisers if d.span_length_counts is not None or d.prefix_counts is not None]
    n = len(panels) + 1
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    flat = axes.ravel()
    for ax, d in zip(flat, panels, strict=False):
        if d.span_length_counts is not None and d.span_length_pmf is not None:
            counts, pmf, fit = d.span_length_counts, d.span_length_pmf, d.span_length_fit
            total = counts.sum()
            support = np.flatnonzero((pmf * total >= 0.5) | (counts > 0))
            support = support[support > 0]
            lo = int(support.min()) if support.size else 1
            hi = int(support.max()) if support.size else 1
            xs = np.arange(lo, hi + 1)
            freq = counts[lo : hi + 1] / max(total, 1)
            step = max(1, math.ceil((hi - lo + 1) / 60))  # wide laws: bars of `step` lengths
            starts = np.arange(0, len(xs), step)
            heights = np.add.reduceat(freq, starts) / step  # per-length height, comparable with the pmf
            ax.bar(
                xs[starts] - 0.5,
                heights,
                width=step,
                align="edge",
                color="tab:blue",
                alpha=0.6,
                label="observed",
            )
            if lo == hi:
                ax.plot([lo, lo], [0, pmf[lo]], color="tab:red", lw=1.5, label="exact law")
                ax.set_xlim(lo - 5, hi + 5)
            else:
                ax.plot(xs, pmf[lo : hi + 1], color="tab:red", lw=1.5, label="exact law")
            ax.set_xlabel("noise span length")
        else:
            assert d.prefix_counts is not None and d.prefix_bounds is not None
            counts, fit = d.prefix_counts, d.prefix_fit
            lo, hi = d.prefix_bounds
            total = counts.sum()
            bins = max(1, min(40, hi - lo + 1))
            edges = np.linspace(lo, hi + 1, bins + 1)
            ks = np.repeat(np.arange(len(counts)), counts)
            ax.hist(ks, bins=edges, color="tab:green", alpha=0.6, label="observed")
            ax.hlines(total / bins, lo, hi + 1, color="tab:red", lw=1.5, label="uniform law")
            ax.set_xlabel("prefix length k")
        p = "" if fit is None else f", p={_p(fit.pvalue)}"
        ax.set_title(f"{d.label}\n{d.samples} examples{p}", fontsize=9)
        ax.legend(fontsize=7)
    ax = flat[len(panels)]
    idx = np.arange(len(stats.denoisers))
    ax.bar(idx - 0.2, stats.denoiser_counts / max(stats.samples, 1), width=0.4, label="observed")
    ax.bar(idx + 0.2, [d.rate for d in stats.denoisers], width=0.4, label="rate / sum", color="tab:red")
    ax.set_xticks(idx, [str(i) for i in idx])
    ax.set_xlabel("denoiser (mixture index)")
    ax.set_title(f"denoiser shares, p={_p(stats.rates_fit.pvalue)}", fontsize=9)
    top = max(
        float(stats.denoiser_counts.max()) / max(stats.samples, 1), max(d.rate for d in stats.denoisers)
    )
    ax.set_ylim(0, top * 1.35)
    ax.legend(fontsize=7, ncol=2, loc="upper center")
    for ax in flat[n:]:
        ax.axis("off")
    fig.suptitle(title or f"ul2: {stats.samples} examples vs the exact laws", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
