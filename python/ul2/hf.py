"""Hugging Face adapter: :class:`DataCollator`, the ``data_collator=`` of a ``transformers.Trainer``.

It takes what a tokenised ``datasets.Dataset`` gives the Trainer — a list of features, each with
``input_ids`` (a list or array of token ids, one training row) — denoises the rows with
:class:`ul2.Collator` and returns PyTorch tensors (``torch.from_numpy``, no copy)::

    collator = ul2.hf.DataCollator(ul2.presets.ul2(), sentinels=sentinels, inputs_length=512)
    trainer = transformers.Trainer(model=t5, args=args, train_dataset=tokenized, data_collator=collator)

Encoder-decoder models (T5, UL2, ...) get ``format="hf"``: ``input_ids``, ``attention_mask``,
``labels`` (-100 on padding), ``decoder_input_ids``, ``decoder_attention_mask``. Causal LMs
(Llama, GPT-2, ...) get the decoder-only prefix-LM rows of ``sequence_length=...``:
``input_ids`` = inputs + targets, ``labels`` aligned with ``input_ids`` (-100 outside the
targets; the model shifts them itself), and, with ``prefix_attention="bidirectional"`` (the
default), ``attention_mask`` as a ``[B, 1, S, S]`` additive mask in which the prefix attends
both ways (:func:`ul2.torch.attention_mask_4d`); ``"causal"`` keeps the 2-D padding mask.
Keys the model does not take (``prefix_lengths``, ``denoiser``, packing fields) are not returned.

Example keys: a feature column named by ``key_column`` (stable row ids, e.g. added with
``dataset.map(..., with_indices=True)``; pass ``remove_unused_columns=False`` to the Trainer so
it reaches the collator), or else a running batch counter. Inside ``DataLoader`` workers the
counter numbers batches as ``DataLoader`` deals them out (round robin), so 0, 1 or N workers
give the same batches in the first pass. ``DataLoader`` starts new workers, with new copies of
the collator, for every pass (epoch); each set of copies counts from a key range of its own
(2**40 keys further on for each copy handed out), so a later pass never replays the noise of
an earlier one, and the keys depend only on the order in which copies are handed out, never
on timing.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._ul2 import Sentinels
from .collate import Collator, Options
from .denoisers import Denoiser, Mixture

if TYPE_CHECKING:
    import torch as _torch
    from typing_extensions import Unpack

__all__ = ["DataCollator"]

_PREFIX_ATTENTION = ("bidirectional", "causal")
# Collator outputs a Hugging Face model never takes as a keyword.
_DROP = (
    "prefix_lengths",
    "bidirectional_mask",
    "segment_ids",
    "positions",
    "cu_seqlens",
    "decoder_cu_seqlens",
    "denoiser",
)

# Keys of one set of DataLoader workers (one pass): far more than any epoch's examples.
_GENERATION_KEYS = 1 << 40

# Collators of this process, told of each fork (a DataLoader worker gets its copy by fork).
_LIVE: weakref.WeakSet[DataCollator] = weakref.WeakSet()


def _count_fork() -> None:
    for c in list(_LIVE):
        c._handoffs += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_count_fork)


class DataCollator:
    """Denoises a list of features into a batch of tensors for a Hugging Face model.

    The arguments are those of :class:`ul2.Collator` (``ul2.collate.Options``: ``inputs_length``
    for encoder-decoder, ``sequence_length`` for decoder-only, ``long_rows``, ...), plus:

    - ``input_column``: the feature holding each row's token ids (default ``"input_ids"``).
    - ``key_column``: a feature holding each row's example key (an int >= 0), or ``None`` for a
      running counter.
    - ``prefix_attention``: decoder-only only — ``"bidirectional"`` returns a 4-D additive
      ``attention_mask`` with a bidirectional prefix (of ``mask_dtype``, float32 by default;
      give the model's dtype), ``"causal"`` the 2-D padding mask. Packed rows always get a
      4-D mask (examples must not see each other) and ``position_ids``.
    - ``dtype``: ``numpy.int64`` by default, so ids and labels are ``LongTensor``;
      ``numpy.int32`` halves the bytes of ids and masks (embeddings take ``IntTensor``
      indices), and ``labels`` are still int64, since ``cross_entropy`` takes only
      ``LongTensor`` targets.

    Inside ``DataLoader`` workers a batch's tensors are views of one shared-memory storage
    (:func:`ul2.torch.tensors`), so each batch crosses to the main process in one piece.
    """

    def __init__(
        self,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: Sentinels,
        input_column: str = "input_ids",
        key_column: str | None = None,
        prefix_attention: str = "bidirectional",
        mask_dtype: _torch.dtype | None = None,
        **given: Unpack[Options],
    ) -> None:
        if prefix_attention not in _PREFIX_ATTENTION:
            raise ValueError(f"prefix_attention={prefix_attention!r}: must be one of {_PREFIX_ATTENTION}")
        # int64 by default: Hugging Face models index embeddings and the loss with LongTensors.
        opts: Options = {"dtype": np.int64, **given}
        self.collator = Collator(mixture, sentinels=sentinels, **opts)
        if self.collator.format not in ("hf", "decoder"):
            raise ValueError(
                f"format={self.collator.format!r}: a Hugging Face model takes 'hf' (encoder-decoder) "
                "or 'decoder' (decoder-only); use ul2.Collator for the seqio formats"
            )
        self.input_column, self.key_column = input_column, key_column
        self.prefix_attention, self.mask_dtype = prefix_attention, mask_dtype
        self._calls = 0  # batches this process has collated
        self._next = 0  # the next key of the running counter (main process)
        self._batch_size: int | None = None
        self._pid = os.getpid()
        # Copies handed to other processes (forked, or pickled for spawn): a copy's count says
        # which set of DataLoader workers (which pass) it belongs to.
        self._handoffs = 0
        _LIVE.add(self)

    def __getstate__(self) -> dict[str, Any]:
        self._handoffs += 1
        return self.__dict__.copy()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        _LIVE.add(self)

    @property
    def format(self) -> str:
        return self.collator.format

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, _torch.Tensor]:
        if not isinstance(features, Sequence) or not features:
            raise TypeError(
                f"features: expected a non-empty list of dicts, got {type(features).__name__}"
                + (" (empty)" if isinstance(features, Sequence) else "")
            )
        rows = _rows(features, self.input_column)
        out = self.collator(rows, self._keys(features))
        if self.format == "decoder" and (self.prefix_attention == "bidirectional" or self.collator.pack):
            from .torch import attention_mask_4d

            out["attention_mask"] = attention_mask_4d(
                out, bidirectional=self.prefix_attention == "bidirectional", dtype=self.mask_dtype
            )  # type: ignore[assignment]
            if self.collator.pack:
                out["position_ids"] = out["positions"]
        from .torch import tensors

        # cross_entropy takes only int64 targets: int32 labels are widened (in the one copy a
        # DataLoader worker makes anyway, or as a cast in the main process).
        return tensors({name: a for name, a in out.items() if name not in _DROP}, int64=("labels",))

    def _keys(self, features: Sequence[Mapping[str, Any]]) -> npt.NDArray[np.uint64]:
        n = len(features)
        if self.key_column is not None:
            try:
                keys = np.asarray([int(f[self.key_column]) for f in features])
            except KeyError:
                raise KeyError(
                    f"features: no column {self.key_column!r} (key_column); with a Trainer pass "
                    "remove_unused_columns=False so it reaches the collator"
                ) from None
            if (keys < 0).any():
                raise ValueError(f"features: {self.key_column!r} holds a negative key")
            return keys.astype(np.uint64)
        if os.getpid() != self._pid:  # a forked copy starts its own count
            self._pid, self._calls, self._batch_size = os.getpid(), 0, None
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        if self._batch_size is None:
            self._batch_size = n
        if info is None:
            start = self._next
            self._next += n
        else:
            # DataLoader deals batch g to worker g % workers; every batch but the last is full.
            # It hands out worker w's copy right after worker w-1's, so the copies of one pass
            # share handoffs - worker: 1 for the first pass, then a new value for each pass.
            generation = self._handoffs - worker - 1
            start = generation * _GENERATION_KEYS + (self._calls * workers + worker) * self._batch_size
        self._calls += 1
        return np.arange(start, start + n, dtype=np.uint64)

    def __repr__(self) -> str:
        return (
            f"ul2.hf.DataCollator({self.collator!r}, input_column={self.input_column!r}, "
            f"key_column={self.key_column!r}, prefix_attention={self.prefix_attention!r})"
        )


def _rows(features: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    """Every feature's row as :func:`_row` gives it. The common batch (dicts whose rows are all
    lists, or all 1-D arrays) is read with one lookup per row: a check of each row's type costs
    about as much as the collator's own work on it."""
    if set(map(type, features)) == {dict}:
        try:
            rows = [f[column] for f in features]
        except KeyError:
            rows = []  # the per-row path names the feature
        kinds = set(map(type, rows))
        if kinds == {list} or (kinds == {np.ndarray} and all(r.ndim == 1 for r in rows)):
            return rows
    return [_row(f, column, i) for i, f in enumerate(features)]


def _row(feature: Mapping[str, Any], column: str, i: int) -> Any:
    """Row ``i``'s token ids as the collator reads them without a copy: a list of ints as is
    (the collator reads a batch of such lists into one array in one pass), a 1-D array as is
    (read in place, through its strides if it has any), a tensor as its NumPy view; anything
    else as a contiguous array."""
    if not isinstance(feature, Mapping):
        raise TypeError(f"features[{i}]: expected a dict of columns, got {type(feature).__name__}")
    try:
        ids = feature[column]
    except KeyError:
        raise KeyError(f"features[{i}]: no column {column!r} (input_column)") from None
    if type(ids) is list or (isinstance(ids, np.ndarray) and ids.ndim == 1):
        return ids
    if hasattr(ids, "numpy") and not isinstance(ids, np.ndarray):  # a torch tensor
        ids = ids.numpy()
    return np.ascontiguousarray(ids)
