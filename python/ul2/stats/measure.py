"""``measure``: denoise examples of a token stream and set what they contain against the exact
laws, per denoiser; ``MixtureStats`` holds the result and its table."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _ul2
from ..dataset import DenoisingDataset
from ..denoisers import (
    CausalLM,
    Denoiser,
    FillInTheMiddle,
    Mixture,
    PrefixLM,
    SpanCorruption,
    TextInfilling,
    as_mixture,
)
from ..plan import plan
from .fit import GoodnessOfFit, chisquare, fit_histogram, format_pvalue
from .infilling import leading_gap_pmf, noise_tokens, span_count_pmf
from .laws import LAWS, composition_pmf, fim_end_pmf, fim_middle_pmf, fim_spm_seen, prefix_bounds


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
    # Fill-in-the-middle (None otherwise): piece lengths read back, and their fits.
    fim_suffix_counts: npt.NDArray[np.int64] | None = None
    fim_suffix_fit: GoodnessOfFit | None = None
    fim_prefix_fit: GoodnessOfFit | None = None  # where the middle is the target
    fim_middle_fit: GoodnessOfFit | None = None  # where the middle is the target
    fim_spm_seen_fit: GoodnessOfFit | None = None  # rows starting <pre> <suf>
    fim_spm_fit: GoodnessOfFit | None = None  # SPM among rows with a prefix (middle target)
    # Text infilling (None otherwise): masks per row and the clean tokens before the first.
    infill_mask_counts: npt.NDArray[np.int64] | None = None  # [j] = rows with j masks
    infill_masks_fit: GoodnessOfFit | None = None
    infill_leading_fit: GoodnessOfFit | None = None
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
            fim_fits: tuple[tuple[str, GoodnessOfFit | None, str], ...] = (
                ("suffix law", d.fim_suffix_fit, "(2(L-i)+1)/(L+1)^2"),
                ("prefix law", d.fim_prefix_fit, "(2(L-i)+1)/(L+1)^2"),
                ("middle law", d.fim_middle_fit, "1/(L+1), 2(L+1-d)/(L+1)^2"),
                ("<pre> <suf> rows", d.fim_spm_seen_fit, "s + (1-s)(2L+1)/(L+1)^2"),
                ("SPM share", d.fim_spm_fit, "spm_rate, among rows with a prefix"),
            )
            if isinstance(d.denoiser, TextInfilling):
                lam = d.denoiser.poisson_lambda
                fim_fits += (
                    ("masks per row", d.infill_masks_fit, f"spans drawn from Poisson({lam:g}) until N"),
                    ("clean before 1st mask", d.infill_leading_fit, "a gap of a uniform weak composition"),
                )
            for name, f, law in fim_fits:
                if f is not None:
                    out.append(StatRow("", name, _bins(f), f"L={d.raw_length}: {law}", f.pvalue))
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
        body = [
            (r.denoiser, r.statistic, r.empirical, r.expected, format_pvalue(r.pvalue)) for r in self.rows()
        ]
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


def _bins(result: GoodnessOfFit) -> str:
    if result.method == "exact":
        return "all one value"
    if result.method == "outside support":
        return "values outside the support"
    return f"chi2={result.statistic:.1f}, {result.dof} dof"


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
    # Here, not at the top: ul2.testing imports ul2.stats (prefix_bounds).
    from ..testing import fim_pieces, rows

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
        # Below the sentinels, the FIM ids and the mask ids, which are read back from the examples.
        fims = [d for d in m.denoisers if isinstance(d, FillInTheMiddle)]
        special = [i for d in fims for i in (d.prefix_id, d.middle_id, d.suffix_id)]
        special += [d.mask_id for d in m.denoisers if isinstance(d, TextInfilling) and d.mask_id >= 3]
        low = min([int(universe.min()), *special])
        stream: npt.ArrayLike = synthetic_tokens(need, low, seed=seed)
        source = source or f"synthetic uniform ids in [3, {low})"
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
    # (prefix, middle, suffix, spm_seen, middle-target) per FIM example; prefix -1 where unseen.
    pieces: list[list[tuple[int, int, int, bool, bool]]] = [[] for _ in stats]
    # (masks, clean tokens before the first mask) per text-infilling example.
    infills: list[list[tuple[int, int]]] = [[] for _ in stats]
    counts = np.zeros(len(stats), dtype=np.int64)
    eos = 0 if eos_id is None else 1

    for start in range(0, n, 4096):
        keys = np.arange(start, min(n, start + 4096))
        out = ds.batch(keys)
        which = out["denoiser"]
        examples = rows(ds, out)
        for i, key in enumerate(keys.tolist()):
            d = int(which[i])
            counts[d] += 1
            st = stats[d]
            lo, hi = ds.span(key)
            if hi - lo != st.raw_length:
                st.mismatches.append(f"example {key}: raw length {hi - lo}, planned {st.raw_length}")
                continue
            inputs, targets = examples[i]
            den = st.denoiser
            core_in = inputs[len(den.prefix) : len(inputs) - eos]
            core_t = targets[: len(targets) - eos]
            if isinstance(den, FillInTheMiddle):
                try:
                    a, mid, suf, seen, split = fim_pieces(inputs, targets, den, eos_id=eos_id)
                except AssertionError as e:
                    if len(st.mismatches) < 3:
                        st.mismatches.append(f"example {key}: {e}")
                    continue
                if max(a, 0) + mid + suf != st.raw_length and len(st.mismatches) < 3:
                    st.mismatches.append(f"example {key}: pieces {a}+{mid}+{suf} != raw {st.raw_length}")
                pieces[d].append((a, mid, suf, seen, split == "middle"))
            elif isinstance(den, TextInfilling):
                at = np.flatnonzero(core_in == den.mask_id)
                masked = st.raw_length - (len(core_in) - len(at))
                if masked != noise_tokens(st.raw_length, den.noise_density) and len(st.mismatches) < 3:
                    st.mismatches.append(f"example {key}: {masked} tokens masked")
                if len(core_t) != st.raw_length and len(st.mismatches) < 3:
                    st.mismatches.append(f"example {key}: targets {len(core_t)} != raw {st.raw_length}")
                infills[d].append((len(at), int(at[0]) if len(at) else len(core_in)))
            elif isinstance(den, SpanCorruption):
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
                st.span_length_fit = fit_histogram(st.span_length_counts, st.span_length_pmf)
                clean_all = np.concatenate(clean_lengths[d])
                cpmf = composition_pmf(L - N, row.spans)
                st.nonnoise_length_fit = fit_histogram(np.bincount(clean_all, minlength=L - N + 1), cpmf)
        elif isinstance(den, (PrefixLM, CausalLM)):
            lo_hi = prefix_bounds(L, den.suffix_density) if isinstance(den, PrefixLM) else (0, 0)
            st.prefix_bounds = lo_hi
            if not st.samples:
                continue
            ks = np.array(splits[d], dtype=np.int64)
            st.prefix_counts = np.bincount(ks, minlength=L + 1).astype(np.int64)
            law = np.zeros(max(L + 1, len(st.prefix_counts)))
            law[lo_hi[0] : lo_hi[1] + 1] = 1.0
            st.prefix_fit = fit_histogram(st.prefix_counts, law[: len(st.prefix_counts)])
        elif isinstance(den, FillInTheMiddle):
            _fit_fim(st, den, pieces[d])
        elif isinstance(den, TextInfilling) and st.samples:
            N = noise_tokens(L, den.noise_density)
            masks, leading = (np.array(x, dtype=np.int64) for x in zip(*infills[d], strict=True))
            law = span_count_pmf(N, den.poisson_lambda)
            st.infill_mask_counts = np.bincount(masks, minlength=len(law)).astype(np.int64)
            st.infill_masks_fit = fit_histogram(st.infill_mask_counts, law)
            gaps = leading_gap_pmf(L, den.noise_density, den.poisson_lambda)
            st.infill_leading_fit = fit_histogram(np.bincount(leading, minlength=len(gaps)), gaps)
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


def _fit_fim(st: DenoiserStats, den: FillInTheMiddle, rows: list[tuple[int, int, int, bool, bool]]) -> None:
    """The fill-in-the-middle laws against the pieces read back from ``rows``."""
    if not rows:
        return
    L = st.raw_length
    a, mid, suf, seen, target = (np.array(c) for c in zip(*rows, strict=True))
    st.fim_suffix_counts = np.bincount(suf, minlength=L + 1).astype(np.int64)
    st.fim_suffix_fit = fit_histogram(st.fim_suffix_counts, fim_end_pmf(L))
    q = fim_spm_seen(L, den.spm_rate)
    st.fim_spm_seen_fit = chisquare([int((~seen).sum()), int(seen.sum())], [1 - q, q])
    if target.all():
        st.fim_prefix_fit = fit_histogram(np.bincount(a, minlength=L + 1), fim_end_pmf(L))
        st.fim_middle_fit = fit_histogram(np.bincount(mid, minlength=L + 1), fim_middle_pmf(L))
        has = a > 0  # SPM and PSM read apart only with a prefix
        if has.any():
            spm = int(seen[has].sum())
            st.fim_spm_fit = chisquare([int(has.sum()) - spm, spm], [1 - den.spm_rate, den.spm_rate])
