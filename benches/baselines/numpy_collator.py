"""NumPy baseline: span corruption the way Hugging Face's ``run_t5_mlm_flax.py`` does it.

This is the algorithm as published in ``DataCollatorForT5MLM`` (transformers,
``examples/flax/language-modeling/run_t5_mlm_flax.py``), re-implemented from that
description, so that the benchmarks compare ul2 against the NumPy code people actually run:

1. Per example (a Python loop): the counts ``N`` (noise tokens) and ``n`` (noise spans) as T5
   computes them (float32, round half to even, ``N`` clamped to ``[1, L-1]``, ``n >= 1``);
   then ``_random_segmentation`` twice: an ``O(L)`` 0/1 array with ``n-1`` ones is shuffled
   (a full random permutation), prefixed with 0 and cumulatively summed into segment ids whose
   counts are the span lengths. Non-noise and noise lengths are interleaved (non-noise first)
   into the mask.
2. Per batch (vectorised, as HF does): ``create_sentinel_ids`` and ``filter_input_ids`` turn
   the ``[B, L]`` mask into inputs (each noise span replaced by its sentinel) and labels (each
   non-noise span replaced by its sentinel), with T5's sentinel layout
   ``<extra_id_k> = vocab_size - 1 - k``; then EOS is appended to both.
3. Padding to the budgets, ``labels`` padded with -100, ``decoder_input_ids`` = labels shifted
   right (pad first, -100 -> pad) and both attention masks: the five arrays ``ul2.Collator``
   returns in its ``"hf"`` format.

Two departures, both in the baseline's favour or neutral: segment lengths are counted with
``np.bincount`` instead of ``np.unique(..., return_counts=True)`` (same result, no sort; pass
``exact_hf=True`` for HF's ``np.unique``, about 1.3x slower), and HF's batched filter is
applied per group of rows that share a denoiser and a length (HF's code needs every row of a
batch to have the same length; a mixture does not). For the mixture workload a prefix-LM
denoiser (T5's ``random_prefix_noise_mask`` split) is included so both implementations do the
same work. Randomness: one ``numpy.random.Generator(PCG64)`` per call, seeded from ``(seed,
call number)``; outputs are not bit-identical to ul2's, but they have the same structure and
shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Span:
    """T5 span corruption: ``noise_density`` of the tokens in spans of mean ``mean_span_length``."""

    mean_span_length: float = 3.0
    noise_density: float = 0.15


@dataclass(frozen=True)
class Prefix:
    """T5's prefix LM: split uniformly in ``[lo, L-1]``, ``lo`` from ``suffix_density``."""

    suffix_density: float = 0.5


Denoiser = Span | Prefix


def t5_counts(length: int, noise_density: float, mean_span_length: float) -> tuple[int, int]:
    """``(N, n)`` as T5's ``random_spans_noise_mask`` computes them (float32, half to even)."""
    if noise_density == 0.0 or length < 2:
        return 0, 0
    noise = int(np.round(np.float32(length) * np.float32(noise_density)))
    noise = min(max(noise, 1), length - 1)
    spans = max(1, int(np.round(np.float32(noise) / np.float32(mean_span_length))))
    return noise, spans


def random_segmentation(
    num_items: int, num_segments: int, rng: np.random.Generator, exact_hf: bool = False
) -> npt.NDArray[np.intp]:
    """HF's ``_random_segmentation``: a uniformly random composition of ``num_items`` into
    ``num_segments`` positive parts, by shuffling an ``O(num_items)`` 0/1 array; the parts are
    counted with ``np.bincount``, or with HF's ``np.unique`` (a sort) when ``exact_hf``."""
    mask_indices = np.arange(num_items - 1) < (num_segments - 1)
    rng.shuffle(mask_indices)
    first_in_segment = np.pad(mask_indices, [[1, 0]])
    segment_id = np.cumsum(first_in_segment)
    if exact_hf:
        return np.unique(segment_id, return_counts=True)[1]
    return np.bincount(segment_id, minlength=num_segments)


def random_spans_noise_mask(
    length: int,
    noise_density: float,
    mean_span_length: float,
    rng: np.random.Generator,
    exact_hf: bool = False,
) -> npt.NDArray[np.bool_]:
    """HF's ``random_spans_noise_mask``: starts with non-noise, ends with noise, exactly ``N``
    noise tokens in ``n`` spans."""
    noise, spans = t5_counts(length, noise_density, mean_span_length)
    if spans == 0:
        return np.zeros(length, dtype=bool)
    noise_span_lengths = random_segmentation(noise, spans, rng, exact_hf)
    nonnoise_span_lengths = random_segmentation(length - noise, spans, rng, exact_hf)
    interleaved = np.reshape(np.stack([nonnoise_span_lengths, noise_span_lengths], axis=1), [spans * 2])
    span_starts = np.cumsum(interleaved)[:-1]
    span_start_indicator = np.zeros((length,), dtype=np.int8)
    span_start_indicator[span_starts] = True
    span_num = np.cumsum(span_start_indicator)
    return np.equal(span_num % 2, 1)


def create_sentinel_ids(mask_indices: npt.NDArray[np.int8], vocab_size: int) -> npt.NDArray[np.int64]:
    """HF's ``create_sentinel_ids`` ([B, L]): the sentinel at each span start, -1 on span
    continuations, 0 elsewhere."""
    start_indices = mask_indices - np.roll(mask_indices, 1, axis=-1) * mask_indices
    start_indices[:, 0] = mask_indices[:, 0]
    sentinel_ids = np.where(start_indices != 0, np.cumsum(start_indices, axis=-1), start_indices)
    sentinel_ids = np.where(sentinel_ids != 0, (vocab_size - sentinel_ids), 0)
    sentinel_ids -= mask_indices - start_indices
    return sentinel_ids


def filter_input_ids(input_ids: npt.NDArray[Any], sentinel_ids: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """HF's ``filter_input_ids``: span starts become sentinels, continuations are dropped; every
    row of the batch must keep the same number of tokens."""
    batch_size = input_ids.shape[0]
    input_ids_full = np.where(sentinel_ids != 0, sentinel_ids, input_ids)
    return input_ids_full[input_ids_full >= 0].reshape((batch_size, -1))


class NumpyCollator:
    """Per-example NumPy span corruption (plus prefix LM for mixtures) with ``ul2.Collator``'s
    ``"hf"`` outputs.

    ``collator(rows, choices=None)``: ``rows`` is a 2-D ``[B, L]`` array or a list of 1-D
    arrays; ``choices[i]`` is the index in ``denoisers`` that row ``i`` uses (default 0).
    """

    def __init__(
        self,
        denoisers: Sequence[Denoiser] = (Span(),),
        *,
        vocab_size: int,
        inputs_length: int,
        targets_length: int,
        eos_id: int = 1,
        pad_id: int = 0,
        seed: int = 0,
        dtype: npt.DTypeLike = np.int32,
        exact_hf: bool = False,
    ) -> None:
        self.denoisers = tuple(denoisers)
        self.exact_hf = exact_hf
        self.vocab_size = vocab_size
        self.inputs_length, self.targets_length = inputs_length, targets_length
        self.eos_id, self.pad_id = eos_id, pad_id
        self.seed = seed
        self.dtype = np.dtype(dtype)
        self.calls = 0

    def __call__(self, rows: Any, choices: Any = None) -> dict[str, npt.NDArray[Any]]:
        rng = np.random.Generator(np.random.PCG64([self.seed, self.calls]))
        self.calls += 1
        dense = isinstance(rows, np.ndarray)
        batch = len(rows)
        choices = np.zeros(batch, dtype=np.intp) if choices is None else np.asarray(choices)
        inputs = np.full((batch, self.inputs_length), self.pad_id, dtype=self.dtype)
        labels = np.full((batch, self.targets_length), IGNORE_INDEX, dtype=self.dtype)
        input_lengths = np.zeros(batch, dtype=np.intp)
        target_lengths = np.zeros(batch, dtype=np.intp)
        # Group rows that share a denoiser and a length: HF's batched filter needs equal lengths.
        lengths = np.full(batch, rows.shape[1]) if dense else np.fromiter(map(len, rows), np.intp, batch)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, key in enumerate(zip(choices.tolist(), lengths.tolist(), strict=True)):
            groups.setdefault(key, []).append(i)
        for (choice, _), members in groups.items():
            idx = np.asarray(members)
            if dense:
                tokens = rows if len(members) == batch else rows[idx]
            else:
                tokens = np.stack([rows[i] for i in members])
            denoiser = self.denoisers[choice]
            if isinstance(denoiser, Span):
                self._span_group(denoiser, tokens, idx, rng, inputs, labels, input_lengths, target_lengths)
            else:
                self._prefix_group(denoiser, tokens, idx, rng, inputs, labels, input_lengths, target_lengths)
        return self._finish(inputs, labels, input_lengths, target_lengths)

    def _span_group(
        self,
        d: Span,
        tokens: npt.NDArray[Any],
        idx: npt.NDArray[np.intp],
        rng: np.random.Generator,
        inputs: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        input_lengths: npt.NDArray[np.intp],
        target_lengths: npt.NDArray[np.intp],
    ) -> None:
        group, length = tokens.shape
        mask_indices = np.asarray(
            [
                random_spans_noise_mask(length, d.noise_density, d.mean_span_length, rng, self.exact_hf)
                for _ in range(group)
            ]
        )
        labels_mask = ~mask_indices
        input_ids_sentinel = create_sentinel_ids(mask_indices.astype(np.int8), self.vocab_size)
        labels_sentinel = create_sentinel_ids(labels_mask.astype(np.int8), self.vocab_size)
        eos = np.full((group, 1), self.eos_id, dtype=self.dtype)
        new_inputs = np.concatenate([filter_input_ids(tokens, input_ids_sentinel), eos], axis=-1)
        new_labels = np.concatenate([filter_input_ids(tokens, labels_sentinel), eos], axis=-1)
        li, lt = new_inputs.shape[1], new_labels.shape[1]
        if li > self.inputs_length or lt > self.targets_length:
            raise ValueError(
                f"rows of {length} tokens give {li} inputs / {lt} targets; budget "
                f"{self.inputs_length} / {self.targets_length}"
            )
        inputs[idx, :li] = new_inputs
        labels[idx, :lt] = new_labels
        input_lengths[idx] = li
        target_lengths[idx] = lt

    def _prefix_group(
        self,
        d: Prefix,
        tokens: npt.NDArray[Any],
        idx: npt.NDArray[np.intp],
        rng: np.random.Generator,
        inputs: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        input_lengths: npt.NDArray[np.intp],
        target_lengths: npt.NDArray[np.intp],
    ) -> None:
        length = tokens.shape[1]
        hi = length - 1
        scaled = (np.float32(1) - np.float32(2 * d.suffix_density)) * np.float32(hi)
        lo = min(hi, max(1, int(np.round(scaled))))
        splits = rng.integers(lo, hi, size=len(idx), endpoint=True)
        for src, row, k in zip(tokens, idx.tolist(), splits.tolist(), strict=True):
            if k + 1 > self.inputs_length or length - k + 1 > self.targets_length:
                raise ValueError(f"row of {length} tokens split at {k} does not fit the budget")
            inputs[row, :k] = src[:k]
            inputs[row, k] = self.eos_id
            labels[row, : length - k] = src[k:]
            labels[row, length - k] = self.eos_id
            input_lengths[row] = k + 1
            target_lengths[row] = length - k + 1

    def _finish(
        self,
        inputs: npt.NDArray[Any],
        labels: npt.NDArray[Any],
        input_lengths: npt.NDArray[np.intp],
        target_lengths: npt.NDArray[np.intp],
    ) -> dict[str, npt.NDArray[Any]]:
        # HF's shift_tokens_right: labels moved right by one, pad first, -100 replaced by pad.
        decoder_input_ids = np.empty_like(labels)
        decoder_input_ids[:, 0] = self.pad_id
        decoder_input_ids[:, 1:] = labels[:, :-1]
        decoder_input_ids[decoder_input_ids == IGNORE_INDEX] = self.pad_id
        attention_mask = (np.arange(self.inputs_length) < input_lengths[:, None]).astype(self.dtype)
        decoder_attention_mask = (np.arange(self.targets_length) < target_lengths[:, None]).astype(self.dtype)
        return {
            "input_ids": inputs,
            "attention_mask": attention_mask,
            "labels": labels,
            "decoder_input_ids": decoder_input_ids,
            "decoder_attention_mask": decoder_attention_mask,
        }
