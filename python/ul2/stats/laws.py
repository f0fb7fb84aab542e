"""The exact laws a mixture's examples follow: span lengths of a uniform composition, the
range of T5's prefix-LM split (the core's own arithmetic), and fill-in-the-middle's cuts."""

from __future__ import annotations

from math import comb

import numpy as np
import numpy.typing as npt

from .. import _ul2

LAWS = (
    "span-length law: P(len = j) = C(N-j-1, n-2) / C(N-1, n-1) for N tokens in n spans (a uniform "
    "composition; non-noise spans likewise); prefix law: uniform on [lo, L-1]; FIM: cuts a <= b "
    "of two uniform draws on {0..L}, P(prefix = i) = P(suffix = i) = (2(L-i)+1)/(L+1)^2, "
    "P(middle = 0) = 1/(L+1), P(middle = d) = 2(L+1-d)/(L+1)^2, SPM with P = spm_rate; text "
    "infilling: masks per row and the leading gap by ul2.stats.infilling's exact recursion; "
    "p-values: chi-square goodness of fit"
)


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
    """``(lo, hi)`` of T5's prefix-LM split of a row of ``length`` tokens, as the core draws it."""
    return _ul2._prefix_bounds(length, suffix_density)


def fim_end_pmf(length: int) -> npt.NDArray[np.float64]:
    """``pmf[i]`` = P(a fill-in-the-middle prefix, or suffix, has ``i`` tokens) in a row of
    ``length``: the cuts are two independent uniform draws on ``{0, ..., length}``, sorted, and
    the prefix is their minimum, so ``P = ((L+1-i)^2 - (L-i)^2) / (L+1)^2 = (2(L-i)+1) / (L+1)^2``
    (the suffix, ``L`` minus the maximum, likewise)."""
    i = np.arange(length + 1)
    return (2 * (length - i) + 1) / (length + 1) ** 2


def fim_middle_pmf(length: int) -> npt.NDArray[np.float64]:
    """``pmf[d]`` = P(the middle, the difference of the two cuts, has ``d`` tokens):
    ``1/(L+1)`` for ``d = 0`` (equal draws), ``2(L+1-d)/(L+1)^2`` for ``d >= 1``."""
    d = np.arange(length + 1)
    pmf = 2 * (length + 1 - d) / (length + 1) ** 2
    pmf[0] = 1 / (length + 1)
    return pmf.astype(np.float64)


def fim_spm_seen(length: int, spm_rate: float) -> float:
    """P(a row starts ``<pre> <suf>``): SPM (probability ``spm_rate``, drawn apart from the
    cuts) or PSM with an empty prefix, which reads the same: ``s + (1 - s) (2L+1)/(L+1)^2``."""
    return spm_rate + (1 - spm_rate) * float(fim_end_pmf(length)[0])
