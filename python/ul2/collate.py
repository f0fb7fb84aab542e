"""The batch transform: rows of token ids in, a dict of padded NumPy arrays out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _ul2
from .denoisers import Denoiser, Mixture, as_mixture

_DTYPES = {np.dtype(np.int32): False, np.dtype(np.int64): True}


def output_is_wide(dtype: npt.DTypeLike) -> bool:
    """``True`` for int64 outputs, ``False`` for int32; anything else is a ``TypeError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype={dtype!r}: must be numpy.int32 or numpy.int64") from None
    if dt not in _DTYPES:
        raise TypeError(f"dtype={dtype!r}: must be numpy.int32 or numpy.int64")
    return _DTYPES[dt]


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: must be True or False")
    return value


def _budget(obj: Any) -> str:
    if obj.sequence_length is not None:
        return f"sequence_length={obj.sequence_length}"
    return f"inputs_length={obj.inputs_length}, targets_length={obj.targets_length}"


def _engine(
    mixture: Mixture,
    *,
    sentinels: _ul2.Sentinels,
    inputs_length: int | None,
    targets_length: int | None,
    sequence_length: int | None,
    eos_id: int | None,
    pad_id: int,
    format: str | None,
    seed: int,
    dtype: npt.DTypeLike,
    pack: bool,
    bidirectional_mask: bool,
) -> _ul2._Collator:
    """The native batch transform for these arguments (a dataset builds on one too)."""
    return _ul2._Collator(
        mixture._specs(),
        sentinels,
        inputs_length,
        targets_length,
        sequence_length,
        eos_id,
        pad_id,
        format,
        seed,
        output_is_wide(dtype),
        _flag(pack, "pack"),
        _flag(bidirectional_mask, "bidirectional_mask"),
    )


class Collator:
    """Denoises a batch of rows (a 2-D ``[B, L]`` array or a list of 1-D arrays) into padded
    arrays with the names of ``format``: encoder-decoder ``"hf"`` (``input_ids``,
    ``attention_mask``, ``labels`` padded with -100, ``decoder_input_ids``,
    ``decoder_attention_mask``) or ``"seqio"`` (``encoder_input_tokens``,
    ``decoder_target_tokens``, ...) for an ``inputs_length`` budget; decoder-only
    ``"decoder"`` (``input_ids``, ``attention_mask``, ``labels``, ``prefix_lengths``) or
    ``"seqio_decoder"`` (``decoder_target_tokens``, ``decoder_causal_attention``, ...) for a
    ``sequence_length`` budget. ``pack=True`` packs consecutive rows into each output row and
    adds segment ids, positions and ``cu_seqlens``; ``fill_rate`` reports the last batch's fill.

    Row ``i`` is example ``keys[i]``; its denoiser and noise come from ``(seed, key)`` alone.
    Without ``keys``, a running counter numbers the examples. Rows longer than the planned raw
    length for their denoiser (see ``ul2.plan``) are an error, never cut. ``targets_length``
    defaults to the planned maximum of the mixture.

    The work runs in Rust on ul2's thread pool with the GIL released; int32, int64, uint16 and
    uint32 rows are read in place (strided views, Fortran order and misaligned arrays through
    their strides) and the outputs are handed to NumPy without a copy.
    """

    def __init__(
        self,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: _ul2.Sentinels,
        inputs_length: int | None = None,
        targets_length: int | None = None,
        sequence_length: int | None = None,
        eos_id: int | None = 1,
        pad_id: int = 0,
        format: str | None = None,
        seed: int = 0,
        dtype: npt.DTypeLike = np.int32,
        pack: bool = False,
        bidirectional_mask: bool = False,
    ) -> None:
        self._args: dict[str, Any] = dict(
            sentinels=sentinels,
            inputs_length=inputs_length,
            targets_length=targets_length,
            sequence_length=sequence_length,
            eos_id=eos_id,
            pad_id=pad_id,
            format=format,
            seed=seed,
            dtype=dtype,
            pack=pack,
            bidirectional_mask=bidirectional_mask,
        )
        self.mixture = as_mixture(mixture)
        self.sentinels = sentinels
        self.seed = seed
        self.dtype = np.dtype(np.int64 if output_is_wide(dtype) else np.int32)
        self.eos_id, self.pad_id = eos_id, pad_id
        self.pack = _flag(pack, "pack")
        self._core = _engine(self.mixture, **self._args)
        self.format: str = self._core.format
        self.inputs_length: int | None = self._core.inputs_length
        self.targets_length: int | None = self._core.targets_length
        self.sequence_length: int | None = self._core.sequence_length

    def __call__(self, rows: Any, keys: Any = None) -> dict[str, npt.NDArray[Any]]:
        return self._core(rows, keys)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its arguments; the running key counter travels along so a restored
        # collator continues where this one stopped.
        return (_restore_collator, (self.mixture, self._args, self.next_key))

    @property
    def next_key(self) -> int:
        """The key the next call without ``keys`` starts at."""
        return self._core.next_key

    @property
    def fill_rate(self) -> float:
        """Fraction of the last batch's output positions that hold tokens."""
        return self._core.fill_rate

    def __repr__(self) -> str:
        return (
            f"Collator({self.mixture!r}, sentinels={self.sentinels!r}, {_budget(self)}, "
            f"eos_id={self.eos_id}, pad_id={self.pad_id}, format={self.format!r}, seed={self.seed}, "
            f"dtype=numpy.{self.dtype}, pack={self.pack})"
        )


def _restore_collator(mixture: Mixture, args: dict[str, Any], next_key: int) -> Collator:
    c = Collator(mixture, **args)
    c._core._set_next_key(next_key)
    return c
