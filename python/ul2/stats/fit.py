"""Pearson's chi-square goodness of fit, with its p-value from SciPy when installed, else from
the regularized upper incomplete gamma function computed here."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MIN_EXPECTED = 5.0


def gammaincc(a: float, x: float) -> float:
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
        return gammaincc(dof / 2, statistic / 2), "chi-square (built-in gamma)"
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


def fit_histogram(counts: npt.ArrayLike, pmf: npt.ArrayLike) -> GoodnessOfFit:
    """``chisquare`` of a histogram against a law whose supports may end at different lengths."""
    c = np.asarray(counts, dtype=np.float64)
    p = np.asarray(pmf, dtype=np.float64)
    size = max(len(c), len(p))
    c = np.pad(c, (0, size - len(c)))
    p = np.pad(p, (0, size - len(p)))
    return chisquare(c, p)


def format_pvalue(p: float | None) -> str:
    """A p-value as tables show it: 3 decimals, scientific below 0.001, ``n/a`` for NaN."""
    if p is None:
        return ""
    if math.isnan(p):
        return "n/a"
    return f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"
