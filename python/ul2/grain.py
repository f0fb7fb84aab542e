"""Grain adapter (JAX input pipelines): a ``RandomAccessDataSource`` over
:class:`ul2.DenoisingDataset` and a ``MapTransform`` that denoises a whole batch in one call.

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

Importing this module imports grain (the transform subclasses ``grain.transforms.Map``);
``import ul2`` does not.
"""

from __future__ import annotations

from typing import Any

import grain  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import numpy.typing as npt

from .dataset import DenoisingDataset

__all__ = ["DataSource", "Denoise", "data_loader"]


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
