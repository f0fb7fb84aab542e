"""The exact laws of ``TextInfilling`` (BART's text infilling) and their goodness of fit.

For a row of ``L`` tokens with ``N = min(L, ceil(f32(L) * f32(r)))`` (``noise_tokens``):

- span lengths ``X_1, X_2, ...`` are i.i.d. Poisson(lambda) (``poisson_pmf``: the core's table,
  truncated where the mass left is below 2**-60), drawn until ``X_1 + ... + X_j >= N`` or
  ``j = N``; the last span is ``N - (X_1 + ... + X_{j-1})``. ``span_count_pmf(N, lam)`` is the
  law of ``j`` (the masks in the inputs), ``span_length_expected(N, lam)`` the expected number
  of spans of each length in a row (zeros are inserts; the cut last span included): both by
  dynamic programming over the running sum;
- the ``L - N`` clean tokens fall into ``j + 1`` gaps, a uniform weak composition:
  ``P(gap = g | j) = C(C - g + j - 1, j - 1) / C(C + j, j)`` with ``C = L - N``
  (``gap_pmf``); ``leading_gap_pmf`` mixes it over the law of ``j``;
- inputs hold ``L - N + j`` tokens (prompt and EOS aside), targets the ``L`` tokens.

``measure_infilling`` denoises examples through ``DenoisingDataset`` and checks them against
these laws (chi-square, ``fit.chisquare`` with pooled bins). ``fairseq_add_whole_word_mask`` is
a NumPy transcription of fairseq's ``DenoisingDataset.add_whole_word_mask`` (every token a
word start, ``replace_length=1``, ``mask_random=0``) for comparing the two by distribution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .. import _ul2
from .fit import GoodnessOfFit, chisquare, fit_histogram

# The core's Poisson table stops at the first k >= lambda whose term is below this.
_TAIL = 2.0**-60


def noise_tokens(length: int, noise_density: float) -> int:
    """``N = min(L, ceil(f32(L) * f32(r)))``: fairseq's float32 count (100 tokens at 0.3 give 31)."""
    n = math.ceil(float(np.float32(length) * np.float32(noise_density)))
    return min(int(length), n)


def poisson_pmf(lam: float) -> npt.NDArray[np.float64]:
    """Poisson(``lam``) pmf on ``0..K`` as the core's table has it (renormalised after the cut)."""
    terms = [math.exp(-lam)]
    k = 0
    while k < lam or terms[-1] >= _TAIL:
        k += 1
        terms.append(terms[-1] * lam / k)
    p = np.array(terms, dtype=np.float64)
    out: npt.NDArray[np.float64] = p / p.sum()
    return out


def _dp(noise: int, lam: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """``(P(j = t) for t in 0..N, expected spans of length l per row for l in 0..N)``."""
    count = np.zeros(noise + 1)
    lengths = np.zeros(noise + 1)
    if noise == 0:
        count[0] = 1.0
        return count, lengths
    pmf = poisson_pmf(lam)[: noise + 1]
    pmf = np.pad(pmf, (0, noise + 1 - len(pmf)))
    tail = 1.0 - np.concatenate([[0.0], np.cumsum(poisson_pmf(lam))])  # tail[k] = P(X >= k)
    tail = np.clip(np.pad(tail, (0, max(0, noise + 2 - len(tail)))), 0.0, 1.0)
    f = np.zeros(noise)  # P(running sum = s, not stopped), s < N
    f[0] = 1.0
    s = np.arange(noise)
    for t in range(1, noise + 1):
        stop = np.ones(noise) if t == noise else tail[noise - s]
        stopped = f * stop
        count[t] = stopped.sum()
        np.add.at(lengths, noise - s, stopped)
        if t == noise:
            break
        # Draws that keep the sum below N: non-last spans of length x.
        cf = np.cumsum(f)
        lengths[:noise] += pmf[:noise] * cf[::-1]  # sum over s <= N-1-x of f[s]
        f = np.convolve(f, pmf[:noise])[:noise]
        if f.sum() < 1e-17:
            break
    return count, lengths


def span_count_pmf(noise: int, lam: float) -> npt.NDArray[np.float64]:
    """``pmf[j]`` = P(a row with ``noise`` masked tokens gets ``j`` masks)."""
    return _dp(noise, lam)[0]


def span_length_expected(noise: int, lam: float) -> npt.NDArray[np.float64]:
    """``e[l]`` = expected number of spans of length ``l`` in one row (zeros are inserts)."""
    return _dp(noise, lam)[1]


def gap_pmf(clean: int, spans: int) -> npt.NDArray[np.float64]:
    """``pmf[g]`` = P(a given gap has ``g`` clean tokens) when ``clean`` tokens are cut into
    ``spans + 1`` gaps, a uniform weak composition."""
    pmf = np.zeros(clean + 1)
    if spans == 0:
        pmf[clean] = 1.0
        return pmf
    denom = math.comb(clean + spans, spans)
    for g in range(clean + 1):
        pmf[g] = math.comb(clean - g + spans - 1, spans - 1) / denom
    return pmf


def leading_gap_pmf(length: int, noise_density: float, lam: float) -> npt.NDArray[np.float64]:
    """``pmf[g]`` = P(the inputs start with ``g`` clean tokens before the first mask)."""
    noise = noise_tokens(length, noise_density)
    count = span_count_pmf(noise, lam)
    out = np.zeros(length - noise + 1)
    for j, pj in enumerate(count):
        if pj > 0:
            out += pj * gap_pmf(length - noise, j)
    return out


@dataclass
class InfillingStats:
    """``TextInfilling`` examples of raw length ``raw_length`` against the exact laws."""

    raw_length: int
    noise_tokens: int
    samples: int
    masks: npt.NDArray[np.int64]  # [j] = rows with j masks
    masks_fit: GoodnessOfFit
    leading_gap_fit: GoodnessOfFit
    span_lengths: npt.NDArray[np.int64]  # [l] = spans of length l, over all rows
    span_length_fit: GoodnessOfFit
    mismatches: list[str]

    @property
    def masks_mean(self) -> float:
        return float((np.arange(len(self.masks)) * self.masks).sum() / max(self.masks.sum(), 1))


def measure_infilling(
    denoiser: object,
    *,
    raw_length: int = 200,
    samples: int = 4000,
    seed: int = 0,
    mask_id: int | None = None,
) -> InfillingStats:
    """Denoise ``samples`` rows of ``raw_length`` synthetic tokens with ``denoiser`` (a
    ``TextInfilling``) through ``DenoisingDataset`` (encoder-decoder, EOS 1) and fit: the number
    of masks per row, the clean tokens before the first mask, and the span lengths (read with
    the core's own layout of the same keys, which must agree with the rows: same masks, same
    gaps). Deterministic quantities (targets = raw, ``N`` masked tokens) go to ``mismatches``."""
    from ..dataset import DenoisingDataset
    from ..denoisers import TextInfilling

    if not isinstance(denoiser, TextInfilling):
        raise TypeError(f"denoiser={denoiser!r}: must be a TextInfilling")
    m = denoiser.mask_id if mask_id is None else mask_id
    p = len(denoiser.prefix)
    L = raw_length
    noise = noise_tokens(L, denoiser.noise_density)
    rng = np.random.default_rng(seed)
    # Ordinary ids in [3, 30000), never the mask id.
    tokens = rng.integers(3, 30000, size=samples * L + 1).astype(np.int32)
    tokens[tokens == m] = 3 if m != 3 else 4
    ds = DenoisingDataset(
        tokens,
        denoiser,
        sentinels=_ul2.Sentinels.t5(32100),
        inputs_length=p + L + 1,
        seed=seed,
    )
    masks = np.zeros(noise + 1, dtype=np.int64)
    leading = np.zeros(L - noise + 1, dtype=np.int64)
    lengths = np.zeros(noise + 1, dtype=np.int64)
    mismatches: list[str] = []
    n = min(samples, ds.num_samples)
    for start in range(0, n, 2048):
        keys = np.arange(start, min(n, start + 2048))
        out = ds.batch(keys)
        for i, key in enumerate(keys.tolist()):
            n_in = int(out["attention_mask"][i].sum())
            n_t = int(out["decoder_attention_mask"][i].sum())
            inp = out["input_ids"][i, p : n_in - 1]
            tgt = out["labels"][i, : n_t - 1]
            lo, hi = ds.span(key)
            if not np.array_equal(tgt, tokens[lo:hi]) and len(mismatches) < 3:
                mismatches.append(f"example {key}: targets differ from the raw tokens")
            at = np.flatnonzero(inp == m)
            j = len(at)
            if len(inp) - j != L - noise and len(mismatches) < 3:
                mismatches.append(f"example {key}: {L - (len(inp) - j)} tokens masked, exact {noise}")
            masks[min(j, noise)] += 1
            leading[at[0] if j else len(inp)] += 1
            spans, gaps = _ul2._infill_layout(
                L, denoiser.noise_density, denoiser.poisson_lambda, seed=seed, key=key
            )
            clean = np.diff(np.concatenate([[-1], at, [len(inp)]])) - 1
            if (len(spans) != j or not np.array_equal(gaps, clean)) and len(mismatches) < 3:
                mismatches.append(f"example {key}: the row's masks and gaps differ from the core's layout")
            np.add.at(lengths, spans.astype(np.int64), 1)
    expected = span_length_expected(noise, denoiser.poisson_lambda)
    return InfillingStats(
        raw_length=L,
        noise_tokens=noise,
        samples=n,
        masks=masks,
        masks_fit=chisquare(masks, span_count_pmf(noise, denoiser.poisson_lambda)),
        leading_gap_fit=fit_histogram(
            leading, leading_gap_pmf(L, denoiser.noise_density, denoiser.poisson_lambda)
        ),
        span_lengths=lengths,
        span_length_fit=chisquare(lengths, expected / expected.sum()),
        mismatches=mismatches,
    )


def fairseq_add_whole_word_mask(
    length: int, p: float, lam: float, rng: np.random.Generator
) -> tuple[int, int, npt.NDArray[np.int64], int]:
    """fairseq's ``add_whole_word_mask`` on ``length`` tokens between BOS and EOS (every token
    a word start, ``mask_span_distribution`` = ``span-poisson``, ``replace_length=1``,
    ``mask_random=0``), then its ``add_insertion_noise`` for the zero-length spans; with NumPy's
    generator in place of torch's. Returns ``(masks in the output, masked tokens, span lengths
    as drawn and trimmed, inserts)``."""
    # Categorical over the Poisson pmf up to the first term below 1e-7 (k < 128).
    ps: list[float] = []
    lam_k, e, fact = 1.0, math.exp(-lam), 1
    for k in range(128):
        ps.append(e * lam_k / fact)
        lam_k *= lam
        fact *= k + 1
        if ps[-1] < 1e-7:
            break
    probs = np.array(ps, dtype=np.float32).astype(np.float64)
    probs /= probs.sum()
    size = length + 2
    is_word_start = np.ones(size, dtype=np.int64)
    is_word_start[0] = is_word_start[-1] = 0
    num_to_mask = math.ceil(float(np.float32(is_word_start.sum()) * np.float32(p)))
    if num_to_mask == 0:
        return 0, 0, np.zeros(0, dtype=np.int64), 0
    lengths = rng.choice(len(probs), size=num_to_mask, p=probs)
    cum = np.cumsum(lengths)
    while cum[-1] < num_to_mask:
        lengths = np.concatenate([lengths, rng.choice(len(probs), size=num_to_mask, p=probs)])
        cum = np.cumsum(lengths)
    i = int(np.argmax(cum >= num_to_mask))
    lengths[i] = num_to_mask - (0 if i == 0 else cum[i - 1])
    num_to_mask = i + 1
    drawn = lengths[:num_to_mask].copy()
    lengths = drawn[drawn > 0]
    num_inserts = num_to_mask - len(lengths)
    num_to_mask -= num_inserts
    word_starts = np.flatnonzero(is_word_start)
    indices = word_starts[rng.permutation(len(word_starts))[:num_to_mask]]
    source = np.zeros(size, dtype=np.int64)  # 0: a token, 1: <mask>
    to_keep = np.ones(size, dtype=bool)
    is_word_start[-1] = 255
    source[indices] = 1
    masked = np.zeros(size, dtype=bool)
    masked[indices] = True
    lengths = lengths - 1
    while len(indices):
        lengths = lengths - is_word_start[indices + 1]
        uncompleted = lengths >= 0
        indices = indices[uncompleted] + 1
        lengths = lengths[uncompleted]
        to_keep[indices] = False
        masked[indices] = True
    source = source[to_keep]
    inserts = 0
    if num_inserts > 0:
        # add_insertion_noise(source, num_inserts / len(source)): n = ceil(len * p) masks.
        inserts = math.ceil(len(source) * (num_inserts / len(source)))
    return int(source.sum()) + inserts, int(masked.sum()), drawn, inserts
