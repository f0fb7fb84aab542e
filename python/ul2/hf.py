"""Hugging Face adapter: :class:`DataCollator`, the ``data_collator=`` of a ``transformers.Trainer``,
and :class:`StreamingDataset`, denoised batches of a streaming ``datasets.IterableDataset``.

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
``attention="flex"`` gives a FlexAttention ``BlockMask`` instead of the 4-D mask (models loaded
with ``attn_implementation="flex_attention"``), ``attention="padding_free"`` the flattened rows of
``DataCollatorWithFlattening`` (FlashAttention; the prefix then attends causally).
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

A streaming dataset (``load_dataset(..., streaming=True)``, ``Dataset.to_iterable_dataset()``)
is a stream of documents rather than of training rows: :class:`StreamingDataset` runs
:class:`ul2.DenoisingStream` over it in each ``DataLoader`` worker of each rank, resumable
through torchdata's ``StatefulDataLoader``::

    ds = ul2.hf.StreamingDataset(load_dataset(..., streaming=True).map(tokenize), ul2.presets.ul2(),
                                 sentinels=sentinels, inputs_length=512, batch_size=32)
    loader = StatefulDataLoader(ds, batch_size=None, num_workers=4, collate_fn=ul2.torch.collate_fn)
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._ul2 import Sentinels
from .collate import Collator, Options
from .denoisers import Denoiser, Mixture
from .torch import IterableDataset

if TYPE_CHECKING:
    import datasets as _datasets  # type: ignore[import-untyped]
    import torch as _torch
    from typing_extensions import Unpack

__all__ = ["DataCollator", "StreamingDataset"]

_PREFIX_ATTENTION = ("bidirectional", "causal")
_ATTENTION = ("dense", "padding_free", "flex")
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

# The token dtypes a DenoisingStream reads, as datasets names them.
_TOKEN_DTYPES = ("int32", "int64", "uint16", "uint32")

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
    - ``attention``: decoder-only only — how the rows reach the model's attention:

      - ``"dense"`` (the default): the masks above, which every attention implementation takes;
        the 4-D mask has ``S * S`` entries per row.
      - ``"flex"``: ``attention_mask`` is the FlexAttention ``BlockMask`` of
        :func:`ul2.torch.block_mask` (the same attention, no ``S * S`` mask; with
        ``prefix_attention="causal"`` causal and padding only), for a model loaded with
        ``attn_implementation="flex_attention"``; packed rows get ``position_ids``. The mask
        moves to the model's device with the batch. PyTorch 2.15 trains FlexAttention on GPUs
        only (on the CPU it refuses gradients).
      - ``"padding_free"``: :func:`ul2.torch.padding_free`, the layout of transformers'
        ``DataCollatorWithFlattening(return_flash_attn_kwargs=True)``: ``input_ids``, ``labels``
        and ``position_ids``, int64 ``[1, T]`` (every real token, no padding; each example's
        first label -100), ``cu_seq_lens_q/k`` and ``max_length_q/k``, for
        ``attn_implementation="flash_attention_2"`` (or 3), plus ``use_cache=False``: other
        implementations find the examples from ``position_ids`` only without a cache. Those
        kernels cannot attend both ways over a prefix, so it needs ``prefix_attention="causal"``
        (the prefix is then attended causally); for a bidirectional prefix use ``"flex"``.
    - ``fields``: encoder-decoder (``format="hf"``) only — the tensors to return, e.g.
      ``("input_ids", "attention_mask", "labels")`` for T5, which builds ``decoder_input_ids``
      from ``labels`` itself: the others are never computed. ``None`` (the default): all five.
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
        attention: str = "dense",
        **given: Unpack[Options],
    ) -> None:
        if prefix_attention not in _PREFIX_ATTENTION:
            raise ValueError(f"prefix_attention={prefix_attention!r}: must be one of {_PREFIX_ATTENTION}")
        if attention not in _ATTENTION:
            raise ValueError(f"attention={attention!r}: must be one of {_ATTENTION}")
        if attention == "padding_free" and prefix_attention == "bidirectional":
            raise ValueError(
                "attention='padding_free': FlashAttention's varlen kernels attend causally and cannot attend "
                "both ways over the prefix (flash-attention #682); pass prefix_attention='causal' to attend "
                "the prefix causally, or use attention='flex' for a bidirectional prefix"
            )
        if attention != "dense" and mask_dtype is not None:
            raise ValueError(f"mask_dtype={mask_dtype!r}: only attention='dense' makes a float mask")
        # int64 by default: Hugging Face models index embeddings and the loss with LongTensors.
        opts: Options = {"dtype": np.int64, **given}
        self.collator = Collator(mixture, sentinels=sentinels, **opts)
        if self.collator.format not in ("hf", "decoder"):
            raise ValueError(
                f"format={self.collator.format!r}: a Hugging Face model takes 'hf' (encoder-decoder) "
                "or 'decoder' (decoder-only); use ul2.Collator for the seqio formats"
            )
        fields = self.collator.options["fields"]
        if fields is not None:
            # Decoder-only rows reach the model through masks built here from attention_mask,
            # prefix_lengths and the packing fields, so only encoder-decoder rows take a choice.
            if self.collator.format != "hf":
                raise ValueError(
                    f"fields={fields!r}: for format='hf' (encoder-decoder) rows only; decoder-only rows need "
                    "every field to build their attention masks"
                )
            dropped = [name for name in fields if name in _DROP]
            if dropped:
                raise ValueError(
                    f"fields={fields!r}: {dropped[0]!r} is no keyword of a Hugging Face model, and "
                    "ul2.hf.DataCollator never returns it; use ul2.Collator for it"
                )
        if attention != "dense" and self.collator.format != "decoder":
            raise ValueError(
                f"attention={attention!r}: for decoder-only rows (sequence_length=...), not format="
                f"{self.collator.format!r}"
            )
        self.input_column, self.key_column = input_column, key_column
        self.prefix_attention, self.mask_dtype = prefix_attention, mask_dtype
        self.attention = attention
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

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not isinstance(features, Sequence) or not features:
            raise TypeError(
                f"features: expected a non-empty list of dicts, got {type(features).__name__}"
                + (" (empty)" if isinstance(features, Sequence) else "")
            )
        rows = _rows(features, self.input_column)
        out = self.collator(rows, self._keys(features))
        from .torch import tensors

        if self.attention == "padding_free":
            from .torch import padding_free

            flat = padding_free(out, bidirectional=False)
            lengths = {name: flat.pop(name) for name in ("max_length_q", "max_length_k")}
            # Through tensors() as arrays, so that a worker's batch is still one storage.
            return {**tensors({name: t.numpy() for name, t in flat.items()}), **lengths, "use_cache": False}
        if self.attention == "flex":
            from .torch import block_mask

            mask = block_mask(out, bidirectional=self.prefix_attention == "bidirectional")
            fields = {name: a for name, a in out.items() if name not in _DROP and name != "attention_mask"}
            if self.collator.pack:
                fields["position_ids"] = out["positions"]
            return {**tensors(fields, int64=("labels",)), "attention_mask": mask}
        if self.format == "decoder" and (self.prefix_attention == "bidirectional" or self.collator.pack):
            from .torch import attention_mask_4d

            out["attention_mask"] = attention_mask_4d(
                out, bidirectional=self.prefix_attention == "bidirectional", dtype=self.mask_dtype
            )  # type: ignore[assignment]
            if self.collator.pack:
                out["position_ids"] = out["positions"]
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
            f"key_column={self.key_column!r}, prefix_attention={self.prefix_attention!r}, "
            f"attention={self.attention!r})"
        )


def _rows(features: Sequence[Mapping[str, Any]], column: str) -> list[Any]:
    """Every feature's row as :func:`_row` gives it. The common batch (mappings whose rows are
    all lists, or all arrays) is read with one lookup per row: a check of each row's type costs
    about as much as the collator's own work on it."""
    try:
        rows = [f[column] for f in features]
    except (KeyError, TypeError, IndexError):
        rows = []  # not all dicts with the column: the per-row path names the feature
    kinds = set(map(type, rows))
    # Arrays of another rank are left to the collator, which refuses them as _row's copies.
    if kinds == {list} or kinds == {np.ndarray}:
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


class StreamingDataset(IterableDataset):
    """A ``torch.utils.data.IterableDataset`` of denoised examples (or, with ``batch_size``,
    batches) of a Hugging Face streaming dataset, split over ranks and ``DataLoader`` workers
    the way ``datasets`` splits it, resumable through torchdata's ``StatefulDataLoader``.

    ``dataset`` is a ``datasets.IterableDataset`` whose ``column`` holds each example's token ids
    (a document); ``stream_options`` go to :class:`ul2.DenoisingStream` (``inputs_length``,
    ``documents_mode``, ``batch_size``, ``seed``, ``epoch``, ``dtype``, ...). Only ``column`` is
    read, as NumPy arrays. Use ``DataLoader(ds, batch_size=None, collate_fn=ul2.torch.collate_fn)``
    with ``batch_size``, or the loader's batching without it (not with ``pack=True``).

    The split is the one ``datasets`` makes: ``split_dataset_by_node(dataset, rank, world_size)``
    gives this rank its part (whole shards when ``world_size`` divides ``num_shards``, else every
    ``world_size``-th example), and inside a ``DataLoader`` worker the dataset gives the worker
    every ``num_workers``-th of those shards. Each (rank, worker) runs its own ``DenoisingStream``
    over what it is given, with the seed :meth:`shard_seed` of shard ``rank * num_workers +
    worker`` of ``world_size * num_workers``, so every document goes to one worker of one rank
    and no sample is produced twice or lost. A worker with no shard would idle, so a rank with
    fewer shards than ``num_workers`` is a ``ValueError`` (raised by the workers): make more
    shards (``Dataset.to_iterable_dataset(num_shards=...)``, ``IterableDataset.reshard()``) or
    use fewer workers. Give the whole dataset, not one already split by node: the shard seeds
    come from ``rank`` and ``world_size``.

    ``rank`` / ``world_size`` default to ``torch.distributed``'s when it is initialised, else
    0 / 1. ``set_epoch(e)`` sets the epoch of both the noise (``epoch=``) and the dataset (its
    shuffles: ``dataset.shuffle(seed=...)`` reorders the shards and its buffer by epoch), in
    every worker, persistent ones too. The state of each worker (``StatefulDataLoader`` calls
    ``state_dict()`` / ``load_state_dict()`` in the workers) is its stream's, which holds the
    dataset's own ``state_dict()`` before the document it reads next: a loader restored from
    ``loader.state_dict()`` continues with the items the first would have given, byte for byte,
    when resumed with the same ``num_workers``, ``world_size`` and epoch, except that the
    examples held in a shuffle buffer are lost, as ``datasets`` says of its own resumption.
    ``worker_threads``: ul2's thread count inside each ``DataLoader`` worker (``None``: ul2's default).
    """

    def __init__(
        self,
        dataset: _datasets.IterableDataset,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: Sentinels,
        column: str = "input_ids",
        rank: int | None = None,
        world_size: int | None = None,
        worker_threads: int | None = 1,
        **stream_options: Any,
    ) -> None:
        import datasets

        if not isinstance(dataset, datasets.IterableDataset):
            hint = (
                "; make one with dataset.to_iterable_dataset(num_shards=...)"
                if isinstance(dataset, datasets.Dataset)
                else ""
            )
            raise TypeError(
                "dataset: expected a datasets.IterableDataset (a streaming dataset), "
                f"got {type(dataset).__name__}{hint}"
            )
        if not isinstance(column, str):
            raise TypeError(f"column={column!r}: must be a str")
        if dataset.features is not None:
            if column not in dataset.features:
                raise ValueError(
                    f"column={column!r}: not a column of the dataset (columns: {list(dataset.features)})"
                )
            feature = dataset.features[column]
            values = getattr(feature, "feature", None)  # a List's (or LargeList's) items
            if not (isinstance(values, datasets.Value) and values.dtype in _TOKEN_DTYPES):
                raise ValueError(
                    f"column={column!r}: holds {feature!r}, not lists of token ids "
                    f"({', '.join(_TOKEN_DTYPES)}); tokenize it first (dataset.map)"
                )
        self.dataset, self.column = dataset, column
        # Of the examples, only the documents are decoded, straight into NumPy.
        self._documents = dataset.select_columns([column]).with_format("numpy")
        super().__init__(
            self._node,
            mixture,
            sentinels=sentinels,
            rank=rank,
            world_size=world_size,
            worker_threads=worker_threads,
            column=column,
            **stream_options,
        )

    def _node(self) -> _datasets.IterableDataset:
        """This rank's part of the dataset at the current epoch, a new object each time: a
        ``datasets.IterableDataset`` applies a loaded state to every later pass of the same object."""
        from datasets.distributed import split_dataset_by_node  # type: ignore[import-untyped]

        node = split_dataset_by_node(self._documents, rank=self.rank, world_size=self.world_size)
        node.set_epoch(self.epoch)
        return node

    def shard_documents(self, shard: int, shards: int) -> _datasets.IterableDataset:
        """Shard ``shard``'s documents: this rank's part of the dataset, which gives a
        ``DataLoader`` worker iterating it that worker's shards (the whole part elsewhere)."""
        node = self._node()
        workers = shards // self.world_size
        if node.num_shards < workers:
            raise ValueError(
                f"num_workers={workers}: more DataLoader workers than the dataset's shards on rank "
                f"{self.rank} (num_shards={node.num_shards}); each worker reads whole shards, so "
                f"{workers - node.num_shards} would get none. Use num_workers <= {node.num_shards}, "
                "or more shards (Dataset.to_iterable_dataset(num_shards=...), IterableDataset.reshard())"
            )
        return node

    def __iter__(self) -> Iterator[dict[str, npt.NDArray[Any]]]:
        return _naming_column(super().__iter__(), self.column)

    def __repr__(self) -> str:
        return (
            f"ul2.hf.StreamingDataset(<datasets.IterableDataset, {self.dataset.num_shards} shards>, "
            f"column={self.column!r}, rank={self.rank}, world_size={self.world_size}, seed={self.seed}, "
            f"epoch={self.epoch}, worker_threads={self.worker_threads})"
        )


def _naming_column(
    items: Iterator[dict[str, npt.NDArray[Any]]], column: str
) -> Iterator[dict[str, npt.NDArray[Any]]]:
    # A dataset whose features are unknown (after map()) shows a missing column only when an
    # example is read, as a bare KeyError.
    try:
        yield from items
    except KeyError as e:
        if e.args != (column,):
            raise
        raise ValueError(f"column={column!r}: not a column of the dataset's examples") from None
