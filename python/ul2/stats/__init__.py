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
- fill-in-the-middle: the cuts ``a <= b`` are two independent uniform draws on ``{0..L}`` sorted,
  so prefix and suffix lengths follow ``P(i) = (2(L-i)+1)/(L+1)^2``, the middle
  ``P(0) = 1/(L+1)``, ``P(d) = 2(L+1-d)/(L+1)^2``; rows are SPM with probability ``spm_rate``.
  Read back through the ids: the suffix always, prefix and middle where the middle is the target
  (encoder-decoder, ``loss="middle"``), where SPM and PSM read alike (empty prefix) the
  fraction of rows starting ``<pre> <suf>`` (``fim_spm_seen``), and among rows with a prefix
  the SPM share (``spm_rate``) when the middle is the target;
- denoiser ``i`` is drawn with probability ``rate_i / sum(rates)``.

Goodness of fit is Pearson's chi-square, with neighbouring bins pooled until each expects at
least 5 observations; the p-value comes from ``scipy.stats.chi2.sf`` when SciPy is installed,
else from the regularized upper incomplete gamma function computed here (series and continued
fraction, Numerical Recipes' ``gammq``; agrees with SciPy to ~1e-12). An observation outside the
law's support gives p = 0. Spans of one example are not independent (their lengths sum to
``N``); this makes the pooled test on all spans conservative (p-values too high, never too low).
Random-roll denoisers get counts but no span-length test (a span cut by the wrap changes the law).
``TextInfilling``'s laws (Poisson spans until the noise budget, their count, the gaps) and
``measure_infilling`` are in ``infilling``, with a NumPy transcription of fairseq's algorithm.

The modules: ``laws`` (the exact laws), ``fit`` (goodness of fit), ``measure`` (the examples
against the laws) and ``plot``. NumPy only; ``plot`` imports matplotlib when called.
"""

from . import infilling
from .fit import MIN_EXPECTED, GoodnessOfFit, chi2_sf, chisquare, format_pvalue, gammaincc
from .laws import LAWS, composition_pmf, fim_end_pmf, fim_middle_pmf, fim_spm_seen, prefix_bounds
from .measure import DenoiserStats, MixtureStats, StatRow, measure, synthetic_tokens
from .plot import plot

__all__ = [
    "LAWS",
    "MIN_EXPECTED",
    "DenoiserStats",
    "GoodnessOfFit",
    "MixtureStats",
    "StatRow",
    "chi2_sf",
    "chisquare",
    "composition_pmf",
    "fim_end_pmf",
    "fim_middle_pmf",
    "fim_spm_seen",
    "format_pvalue",
    "gammaincc",
    "infilling",
    "measure",
    "plot",
    "prefix_bounds",
    "synthetic_tokens",
]
