"""Grain adapter (JAX input pipelines): a ``RandomAccessDataSource`` over
:class:`ul2.DenoisingDataset`, a ``MapTransform`` that denoises a whole batch in one call, and
an ``IterDataset`` that denoises a grain pipeline of documents as :class:`ul2.DenoisingStream`
does, checkpointed through grain's ``get_state`` / ``set_state``.

Build the dataset with ``format="seqio"`` (encoder-decoder) or ``"seqio_decoder"`` to get the
feature names t5x and MaxText-style trainers consume (``encoder_input_tokens``,
``decoder_target_tokens``, ``decoder_input_tokens``, ``decoder_loss_weights``, ...)::

    ds = ul2.DenoisingDataset(tokens, ul2.presets.ul2(), sentinels=..., inputs_length=512,
                              targets_length=512, format="seqio")
    loader = ul2.grain.data_loader(ds, batch_size=32, shuffle=True, seed=0,
                                   shard_options=grain.sharding.ShardByJaxProcess())
    for batch in loader: ...   # dict of NumPy [32, ...] arrays, this host's share

Two ways in: :class:`DataSource` (one example per record; grain's ``Batch`` stacks them) or,
faster, record indices batched by grain and turned into a batch by :class:`Denoise` with one
parallel Rust call (what :func:`data_loader` builds). Example ``k`` is a pure function of
``(seed, k)``: any worker count, host count or restart gives the same examples (with
``worker_count > 0`` grain's workers each batch their own share of the indices, so the
grouping into batches depends on the worker count, as in any grain pipeline).

Documents that come from a grain pipeline (read, filtered, mapped by grain) go through
:class:`DenoiseIterDataset`, which runs a ``DenoisingStream`` over the pipeline's iterator::

    docs = grain.MapDataset.source(token_arrays).shuffle(seed=0).to_iter_dataset()
    ds = ul2.grain.DenoiseIterDataset(docs, ul2.presets.ul2(), sentinels=..., sequence_length=512,
                                      pack=True, batch_size=32)
    it = iter(ds)
    batch = next(it)
    state = it.get_state()   # JSON-serialisable; a new pipeline's iterator continues from it

Importing this module imports grain (the transform subclasses ``grain.transforms.Map``);
``import ul2`` does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grain  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import numpy.typing as npt

from . import _ul2
from .dataset import DenoisingDataset
from .denoisers import Denoiser, Mixture, as_mixture
from .stream import DenoisingStream

__all__ = ["DataSource", "Denoise", "DenoiseIterDataset", "data_loader"]


def _check(dataset: Any) -> DenoisingDataset:
    if not isinstance(dataset, DenoisingDataset):
        raise TypeError(f"dataset: expected a ul2.DenoisingDataset, got {type(dataset).__name__}")
    return dataset


def _features(out: dict[str, npt.NDArray[Any]], keep_denoiser: bool) -> dict[str, npt.NDArray[Any]]:
    if not keep_denoiser:
        out.pop("denoiser", None)
    return out


class DataSource:
    """A grain ``RandomAccessDataSource``: record ``k`` is example ``k`` of ``dataset`` (a dict of
    1-D NumPy arrays in the dataset's format). ``keep_denoiser`` keeps the ``denoiser`` field
    (the index into the mixture), which t5x models do not take. Picklable, so it works with
    grain's worker processes; its ``repr`` identifies it for grain's checkpoints."""

    def __init__(self, dataset: DenoisingDataset, *, keep_denoiser: bool = False) -> None:
        self.dataset = _check(dataset)
        self.keep_denoiser = keep_denoiser

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int) -> dict[str, npt.NDArray[Any]]:
        return _features(self.dataset[int(k)], self.keep_denoiser)

    def __repr__(self) -> str:
        return f"ul2.grain.DataSource({self.dataset!r}, keep_denoiser={self.keep_denoiser})"


class Denoise(grain.transforms.Map):  # type: ignore[misc, unused-ignore]
    """A grain ``MapTransform``: an example index (int) becomes that example, a 1-D array of
    indices (after grain's ``Batch``) becomes that batch — ``dataset.batch(indices)``, one
    parallel Rust call, the arrays handed over without a copy."""

    def __init__(self, dataset: DenoisingDataset, *, keep_denoiser: bool = False) -> None:
        self.dataset = _check(dataset)
        self.keep_denoiser = keep_denoiser

    def map(self, element: Any) -> dict[str, npt.NDArray[Any]]:
        keys = np.asarray(element)
        if keys.ndim == 0:
            return _features(self.dataset[int(keys)], self.keep_denoiser)
        return _features(self.dataset.batch(keys.astype(np.int64, copy=False)), self.keep_denoiser)

    def __repr__(self) -> str:
        return f"ul2.grain.Denoise({self.dataset!r}, keep_denoiser={self.keep_denoiser})"


def data_loader(
    dataset: DenoisingDataset,
    batch_size: int,
    *,
    shard_options: grain.sharding.ShardOptions | None = None,
    shuffle: bool = False,
    seed: int = 0,
    num_epochs: int | None = 1,
    drop_remainder: bool = True,
    worker_count: int = 0,
    keep_denoiser: bool = False,
    read_options: grain.ReadOptions | None = None,
) -> grain.DataLoader:
    """A ``grain.DataLoader`` of NumPy batches of ``dataset``, this host's share of them.

    The sampler orders the example indices (a global shuffle with ``seed`` when ``shuffle``),
    ``shard_options`` (``grain.sharding.ShardOptions(index, count)`` or ``ShardByJaxProcess()``;
    default: no sharding) gives each host every ``count``-th of them, grain batches the indices
    and :class:`Denoise` computes each batch in one call. ``batch_size`` is per host.
    """
    ds = _check(dataset)
    if worker_count > 0:
        _let_grain_start_workers()
    if shard_options is None:
        shard_options = grain.sharding.NoSharding()
    sampler = grain.samplers.IndexSampler(
        len(ds), shuffle=shuffle, seed=seed if shuffle else None, num_epochs=num_epochs
    )
    return grain.DataLoader(
        data_source=grain.sources.RangeDataSource(0, len(ds), 1),
        sampler=sampler,
        operations=[
            grain.transforms.Batch(batch_size=batch_size, drop_remainder=drop_remainder),
            Denoise(ds, keep_denoiser=keep_denoiser),
        ],
        shard_options=shard_options,
        worker_count=worker_count,
        read_options=read_options,
    )


def _let_grain_start_workers() -> None:
    """grain 0.2.18, with a jaxlib that has profiler hooks for subprocesses, reads an absl flag
    as it starts each worker, and absl refuses that read until the command line is parsed
    (google/grain#1355, fixed after that release): a program that is not an absl app would
    fail, so the flags' defaults are taken as parsed. An absl app's own parsing still runs."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class DenoiseIterDataset(grain.IterDataset):  # type: ignore[misc, unused-ignore]
    """A grain ``IterDataset``: the items of :class:`ul2.DenoisingStream` over the documents of
    ``parent``, a ``grain.IterDataset`` (``MapDataset.source(...).to_iter_dataset()``, after any
    grain ``map`` / ``filter`` / ``shuffle``). Also ``parent.pipe(ul2.grain.DenoiseIterDataset,
    mixture, ...)``.

    ``stream_options`` go to ``DenoisingStream``: the budget (``inputs_length`` or
    ``sequence_length``), ``format``, ``pack``, ``seed``, ``documents_mode``, ``column`` (the
    parent's elements are mappings, e.g. ``{"tokens": ...}``, and this one is the document),
    ``batch_size``, ... An iterator's items are the stream's over the parent iterator's
    elements, byte for byte (``denoiser`` included): one example each, for grain's ``batch``
    (not with ``pack=True``: a packed row's ``cu_seqlens`` is not per row), or with
    ``batch_size`` the stream's batches, one Rust call each.

    The iterator's ``get_state()`` is ``{"parent": ..., "stream": ...}``: the parent iterator's
    ``get_state()`` from before the document the stream reads on from, and the rest of the
    stream's ``state_dict()`` as a JSON string (the count of its pending tokens varies, and
    grain wants a state whose structure never changes). It is JSON-serialisable, as grain's and
    orbax's checkpoints store it. ``set_state(state)``, on an iterator of a pipeline built with
    the same arguments (this one or a new one, at any point), sets the parent iterator to its
    saved state and continues the stream exactly; a state of another configuration is a
    ``ValueError``.
    """

    def __init__(
        self,
        parent: grain.IterDataset,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: _ul2.Sentinels,
        **stream_options: Any,
    ) -> None:
        if isinstance(parent, grain.MapDataset):
            raise TypeError(
                "parent: a grain.MapDataset; pass parent.to_iter_dataset(), the documents in order"
            )
        if not isinstance(parent, grain.IterDataset):
            raise TypeError(f"parent: expected a grain.IterDataset of documents, got {type(parent).__name__}")
        super().__init__(parent)
        self.mixture = as_mixture(mixture)
        self.sentinels = sentinels
        self.stream_options = stream_options
        # Bad options fail where the pipeline is built, not at its first element.
        self.format: str = self._new_stream(()).format

    def _new_stream(self, documents: Iterable[Any]) -> DenoisingStream:
        return DenoisingStream(documents, self.mixture, sentinels=self.sentinels, **self.stream_options)

    def __iter__(self) -> grain.DatasetIterator:
        return _DenoiseDatasetIterator(self._parent.__iter__(), self)

    def __str__(self) -> str:
        return (
            f"DenoiseIterDataset({len(self.mixture)} denoisers, format={self.format!r}, "
            f"batch_size={self.stream_options.get('batch_size')})"
        )


class _Documents:
    """A grain iterator as a ``DenoisingStream`` source with a state of its own."""

    def __init__(self, iterator: grain.DatasetIterator) -> None:
        self.iterator = iterator

    def __iter__(self) -> Iterator[Any]:
        return self.iterator  # type: ignore[no-any-return]

    def state_dict(self) -> Any:
        return self.iterator.get_state()

    def load_state_dict(self, state: Any) -> None:
        self.iterator.set_state(state)


class _DenoiseDatasetIterator(grain.DatasetIterator):  # type: ignore[misc, unused-ignore]
    """A ``DenoisingStream`` over the parent iterator, with grain's state protocol."""

    def __init__(self, parent: grain.DatasetIterator, dataset: DenoiseIterDataset) -> None:
        super().__init__(parent)
        self._documents = _Documents(parent)
        self._dataset = dataset
        self._stream = dataset._new_stream(self._documents)
        # A new stream records no source state until its second document (None: "where the
        # source started"), so the parent's state where the stream starts stands for it.
        self._start = parent.get_state()

    def __next__(self) -> dict[str, npt.NDArray[Any]]:
        return next(self._stream)

    def get_state(self) -> dict[str, Any]:
        state = self._stream.state_dict()
        source = state.pop("source")
        return {"parent": self._start if source is None else source, "stream": json.dumps(state)}

    def set_state(self, state: dict[str, Any]) -> None:
        if not (
            isinstance(state, dict)
            and set(state) == {"parent", "stream"}
            and isinstance(state["stream"], str)
        ):
            raise ValueError(
                "state: not a ul2.grain.DenoiseIterDataset iterator's get_state() "
                "(a dict of 'parent' and 'stream')"
            )
        stream = self._dataset._new_stream(self._documents)
        stream.load_state_dict({**json.loads(state["stream"]), "source": state["parent"]})
        self._stream, self._start = stream, state["parent"]

    def __str__(self) -> str:
        return f"DenoiseDatasetIterator({self._stream!r})"
