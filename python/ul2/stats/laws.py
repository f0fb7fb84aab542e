"""The exact laws a mixture's examples follow: span lengths of a uniform composition, and the
range of T5's prefix-LM split (the core's own arithmetic)."""

from __future__ import annotations

from math import comb

import numpy as np
import numpy.typing as npt

from .. import _ul2

LAWS = (
    "span-length law: P(len = j) = C(N-j-1, n-2) / C(N-1, n-1) for N tokens in n spans (a uniform "
    "composition; non-noise spans likewise); prefix law: uniform on [lo, L-1]; "
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
