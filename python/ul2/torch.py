"""PyTorch adapter: a map-style dataset over :class:`ul2.DenoisingDataset` and a ``collate_fn``.

``import ul2`` never imports PyTorch; this module imports it inside its functions, so it is
needed only once a batch is turned into tensors. Batches are computed by Rust in one call per
batch (``DataLoader`` fetches a batch through ``Dataset.__getitems__``) and handed to PyTorch
with ``torch.from_numpy``: no copy; inside ``DataLoader`` workers a batch is one shared-memory
storage, its tensors views of it (:func:`tensors`). ``dtype=numpy.int32`` halves the bytes
(embeddings take int32 ids); ``cross_entropy`` takes only int64 targets, so widen the labels
(``labels.long()``, or ``tensors(batch, int64=["labels"])`` in the same copy), or give the
dataset ``dtype=numpy.int64`` where everything must be ``LongTensor`` (Hugging Face models)::

    ds = ul2.DenoisingDataset(tokens, ul2.presets.ul2(), sentinels=..., inputs_length=512, dtype=np.int64)
    loader = torch.utils.data.DataLoader(
        ul2.torch.Dataset(ds), batch_size=32, shuffle=True, num_workers=2,
        collate_fn=ul2.torch.collate_fn, pin_memory=True)

Example ``k`` is a pure function of ``(seed, k)``, so every worker count, sampler split and
restart yields the same examples. Inside ``DataLoader`` workers ul2 uses one thread per worker
by default (``worker_threads``), so ``num_workers`` workers do not each start a thread per core.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._ul2 import set_num_threads
from .dataset import DenoisingDataset

if TYPE_CHECKING:
    import torch as _torch

__all__ = ["Dataset", "attention_mask_4d", "collate_fn", "data_loader", "tensors"]

# Per-sample fields that are not stacked row-wise (packed rows' flat boundaries).
_FLAT = ("cu_seqlens", "decoder_cu_seqlens")


class Dataset:
    """A map-style ``torch.utils.data.Dataset`` over a :class:`ul2.DenoisingDataset`.

    ``dataset[k]`` is example ``k`` as a dict of 1-D tensors (views of ul2's output, no copy).
    ``DataLoader`` with automatic batching calls ``__getitems__(indices)``, which computes the
    whole batch in one parallel Rust call and returns NumPy arrays that :func:`collate_fn` wraps
    as tensors without copying. Use it with :func:`collate_fn` (or :func:`data_loader`).

    ``worker_threads``: the ul2 thread count inside each ``DataLoader`` worker process (set on
    the worker's first fetch); ``None`` leaves ul2's default (``UL2_NUM_THREADS`` or all cores).
    The main process is never changed.
    """

    def __init__(self, dataset: DenoisingDataset, *, worker_threads: int | None = 1) -> None:
        if not isinstance(dataset, DenoisingDataset):
            raise TypeError(f"dataset: expected a ul2.DenoisingDataset, got {type(dataset).__name__}")
        if worker_threads is not None and (not isinstance(worker_threads, int) or worker_threads < 1):
            raise ValueError(f"worker_threads={worker_threads!r}: must be an int >= 1 or None")
        self.dataset = dataset
        self.worker_threads = worker_threads
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def _enter_process(self) -> None:
        pid = os.getpid()
        if self._pid == pid:
            return
        self._pid = pid
        if self.worker_threads is None:
            return
        from torch.utils.data import get_worker_info

        if get_worker_info() is not None:
            set_num_threads(self.worker_threads)

    def __getitem__(self, k: int) -> dict[str, _torch.Tensor]:
        self._enter_process()
        import torch

        return {name: torch.from_numpy(np.asarray(a)) for name, a in self.dataset[int(k)].items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, npt.NDArray[Any]]:
        self._enter_process()
        return self.dataset.batch(np.asarray(indices, dtype=np.int64))

    def __repr__(self) -> str:
        return f"ul2.torch.Dataset({self.dataset!r}, worker_threads={self.worker_threads})"


def collate_fn(batch: Any) -> dict[str, _torch.Tensor]:
    """A batch as a dict of tensors.

    ``batch`` is what ``DataLoader`` hands over: a dict of arrays from ``Dataset.__getitems__``
    (or from ``ul2.Collator`` / ``DenoisingDataset.batch``), wrapped with ``torch.from_numpy``
    so the tensors share memory with the arrays; or a list of per-example dicts (a dataset
    without ``__getitems__``), which are stacked (a copy, as stacking always is).
    """
    import torch

    if isinstance(batch, Mapping):
        return tensors(batch)
    if not isinstance(batch, Sequence) or not batch or not all(isinstance(e, Mapping) for e in batch):
        raise TypeError(
            "batch: expected a dict of arrays or a non-empty list of per-example dicts, "
            f"got {type(batch).__name__}"
        )
    names = list(batch[0])
    flat = [n for n in names if n in _FLAT]
    if flat:
        raise ValueError(
            f"batch: per-example dicts with {flat[0]!r} (packed rows) cannot be stacked; "
            "fetch the batch in one call with ul2.torch.Dataset (DataLoader uses its __getitems__)"
        )
    return {n: torch.stack([_as_tensor(e[n]) for e in batch]) for n in names}


def tensors(batch: Mapping[str, Any], *, int64: Sequence[str] = ()) -> dict[str, _torch.Tensor]:
    """A dict of arrays as tensors (tensors pass as they are); ``int64`` names fields to widen
    to int64 (labels, for a loss that takes only ``LongTensor`` targets).

    In the main process each array is wrapped with ``torch.from_numpy`` (no copy). Inside a
    ``DataLoader`` worker the arrays are copied into one shared-memory storage and each tensor
    is a view of it: a batch crosses to the main process as one storage (one file descriptor
    and one socket handshake) rather than one per field, and since PyTorch would have copied
    each field into shared memory to send it anyway, this copy replaces those.
    """
    import torch
    from torch.utils.data import get_worker_info

    arrays = {name: np.asarray(a) for name, a in batch.items() if not isinstance(a, torch.Tensor)}
    if get_worker_info() is None:
        views = {
            name: torch.from_numpy(a.astype(np.int64, copy=False) if name in int64 else a)
            for name, a in arrays.items()
        }
    else:
        views = _in_one_storage(arrays, int64)
    return {name: a if isinstance(a, torch.Tensor) else views[name] for name, a in batch.items()}


def _in_one_storage(arrays: Mapping[str, npt.NDArray[Any]], int64: Sequence[str]) -> dict[str, _torch.Tensor]:
    import torch

    dtypes = {name: np.dtype(np.int64) if name in int64 else a.dtype for name, a in arrays.items()}
    starts, total = {}, 0
    for name, a in arrays.items():
        size = dtypes[name].itemsize
        total = -(-total // size) * size  # each view starts at a multiple of its element size
        starts[name] = total
        total += a.size * size
    storage = torch.UntypedStorage._new_shared(max(total, 1))  # type: ignore[no-untyped-call]
    out = {}
    for name, a in arrays.items():
        t = torch.from_numpy(np.empty(0, dtypes[name]))
        t.set_(storage, starts[name] // dtypes[name].itemsize, a.shape)  # type: ignore[call-overload]
        np.copyto(t.numpy(), a, casting="safe")
        out[name] = t
    return out


def _as_tensor(a: Any) -> _torch.Tensor:
    import torch

    if isinstance(a, torch.Tensor):
        return a
    return torch.from_numpy(np.asarray(a))


def data_loader(
    dataset: Any,
    batch_size: int,
    *,
    worker_threads: int | None = 1,
    **kwargs: Any,
) -> _torch.utils.data.DataLoader[Any]:
    """``torch.utils.data.DataLoader`` with :func:`collate_fn` over ``dataset``: a
    :class:`ul2.DenoisingDataset` (wrapped in :class:`Dataset` with ``worker_threads``), a
    :class:`Dataset`, or a view of one (``Subset``); ``kwargs`` go to ``DataLoader``
    (``shuffle``, ``sampler``, ``num_workers``, ``pin_memory``, ...)."""
    from torch.utils.data import DataLoader

    ds = Dataset(dataset, worker_threads=worker_threads) if isinstance(dataset, DenoisingDataset) else dataset
    kwargs.setdefault("collate_fn", collate_fn)
    return DataLoader(ds, batch_size=batch_size, **kwargs)  # type: ignore[arg-type, unused-ignore]


def attention_mask_4d(
    batch: Mapping[str, Any],
    *,
    bidirectional: bool = True,
    dtype: _torch.dtype | None = None,
) -> _torch.Tensor:
    """The ``[B, 1, S, S]`` additive attention mask of a decoder-only (``format="decoder"``) batch:
    0 where query ``q`` may attend key ``k``, the dtype's most negative value elsewhere — the
    "custom 4-D mask" that Hugging Face decoder models (Llama, GPT-2, ...) accept as
    ``attention_mask``.

    ``q`` attends ``k`` when ``k`` is a real token (``attention_mask``), both are in the same
    example (``segment_ids`` of packed rows) and either ``k <= q`` (causal) or, with
    ``bidirectional``, both lie in the example's prefix (``bidirectional_mask``, or the first
    ``prefix_lengths`` positions): the prefix-LM attention of UL2's S-denoiser and of the
    inputs of every example. ``dtype`` defaults to ``torch.float32``; give the model's.
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    real = _as_tensor(batch["attention_mask"]).bool()
    b, s = real.shape
    pos = torch.arange(s, device=real.device)
    allowed = (pos[None, :] <= pos[:, None])[None] & real[:, None, :]
    same: torch.Tensor | None = None
    if "segment_ids" in batch:
        seg = _as_tensor(batch["segment_ids"])
        same = seg[:, :, None] == seg[:, None, :]
        allowed &= same
    if bidirectional:
        if "bidirectional_mask" in batch:
            prefix = _as_tensor(batch["bidirectional_mask"]).bool()
        elif "prefix_lengths" in batch:
            prefix = pos[None, :] < _as_tensor(batch["prefix_lengths"]).reshape(b, 1)
        else:
            raise KeyError("batch: needs 'bidirectional_mask' or 'prefix_lengths' for a bidirectional prefix")
        both = prefix[:, :, None] & prefix[:, None, :]
        if same is not None:
            both &= same
        allowed |= both
    mask = torch.zeros((b, 1, s, s), dtype=dtype, device=real.device)
    return mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
