"""PyTorch adapter: a map-style dataset over :class:`ul2.DenoisingDataset`, an iterable one over
:class:`ul2.DenoisingStream` (:class:`IterableDataset`: split over workers and ranks, resumable
with torchdata's ``StatefulDataLoader``) and a ``collate_fn``; and the attention of decoder-only
batches as a dense mask (:func:`attention_mask_4d`), a FlexAttention ``BlockMask``
(:func:`block_mask`) or Hugging Face's padding-free rows (:func:`padding_free`).

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

import hashlib
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._ul2 import set_num_threads
from .collate import BATCH_FIELDS
from .dataset import DenoisingDataset
from .denoisers import Denoiser, Mixture
from .loss import DenoiserLoss, check_arguments, out_of_range
from .stream import DenoisingStream

if TYPE_CHECKING:
    import torch as _torch
    from torch.utils.data import IterableDataset as _IterableBase

    from . import _ul2
    from ._flex import PrefixLMBlockMask
else:

    class _IterableBase:
        # At run time IterableDataset is registered as a virtual subclass of torch's on first use
        # (see _register_iterable), so that importing ul2.torch does not import torch.
        def __class_getitem__(cls, item: object) -> type:
            return cls


__all__ = [
    "Dataset",
    "IterableDataset",
    "attention_mask_4d",
    "block_mask",
    "collate_fn",
    "data_loader",
    "loss_by_denoiser",
    "padding_free",
    "tensors",
]


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


class IterableDataset(_IterableBase[dict[str, npt.NDArray[Any]]]):
    """A ``torch.utils.data.IterableDataset`` of :class:`ul2.DenoisingStream` examples, split over
    ``DataLoader`` workers and distributed ranks, resumable through torchdata's ``StatefulDataLoader``.

    ``make_documents()`` returns a fresh iterable of documents (1-D token arrays, or mappings
    with ``column``); it is called once per iteration in each worker, so every worker reads the
    source from its start. ``stream_options`` go to ``DenoisingStream`` (``inputs_length``,
    ``documents_mode``, ``batch_size``, ``seed``, ``dtype``, ...). With ``batch_size`` each item is
    a batch: use ``DataLoader(ds, batch_size=None, collate_fn=ul2.torch.collate_fn)``; without it
    each item is one example for the loader's own batching (not with ``pack=True``).

    The split: there are ``shards = world_size * num_workers`` shards, shard
    ``rank * num_workers + worker_id`` takes documents ``shard, shard + shards, ...`` (every
    ``shards``-th document of ``make_documents()``) and runs its own ``DenoisingStream`` over them
    with seed :meth:`shard_seed` (the given ``seed`` itself when there is one shard). What is
    guaranteed: each shard's items are ``DenoisingStream(docs[shard::shards], mixture,
    seed=shard_seed(shard), ...)``'s, byte for byte, so every document goes to exactly one shard
    and no sample is produced twice or lost; the items are deterministic for a fixed
    ``(world_size, num_workers)``. They are not those of one stream over all documents: samples
    never join documents of two shards, each shard has its own tail, and the order across
    shards is the ``DataLoader``'s round-robin over workers. Another worker or rank count gives
    other (equally valid) examples, and a state saved with one count cannot be loaded with another.

    ``rank`` / ``world_size`` default to ``torch.distributed``'s when it is initialised, else 0 / 1.
    ``state_dict()`` / ``load_state_dict()`` are the ``StatefulDataLoader`` protocol: it calls them
    on the dataset inside each worker; the state is the worker's stream's ``state_dict()`` with its
    shard, and a loaded state makes the next iteration continue that stream exactly (at the epoch
    it was saved in). :meth:`set_epoch` gives the next iteration the noise of another epoch.
    ``worker_threads``: ul2's thread count inside each ``DataLoader`` worker (``None``: ul2's default).
    """

    def __init__(
        self,
        make_documents: Callable[[], Iterable[Any]],
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: _ul2.Sentinels,
        rank: int | None = None,
        world_size: int | None = None,
        worker_threads: int | None = 1,
        **stream_options: Any,
    ) -> None:
        if not callable(make_documents):
            raise TypeError(
                f"make_documents: expected a function returning a fresh iterable of documents, "
                f"got {type(make_documents).__name__}"
            )
        if worker_threads is not None and (not isinstance(worker_threads, int) or worker_threads < 1):
            raise ValueError(f"worker_threads={worker_threads!r}: must be an int >= 1 or None")
        if (rank is None) != (world_size is None):
            raise ValueError("rank and world_size: give both or neither")
        if rank is None or world_size is None:
            rank, world_size = _distributed_rank()
        if not (
            isinstance(world_size, int)
            and world_size >= 1
            and isinstance(rank, int)
            and 0 <= rank < world_size
        ):
            raise ValueError(f"rank={rank!r}, world_size={world_size!r}: need 0 <= rank < world_size")
        _register_iterable()
        self.make_documents = make_documents
        self.mixture = mixture
        self.sentinels = sentinels
        self.rank, self.world_size = rank, world_size
        self.worker_threads = worker_threads
        epoch = stream_options.pop("epoch", 0)
        self.stream_options = stream_options
        self.seed: int = int(stream_options.get("seed", 0))
        # Bad options fail here, in the main process, rather than in a worker (no documents read).
        self._new_stream(iter(()), 0, 1, epoch)
        self._epoch = _shared_epoch(epoch)
        self._stream: DenoisingStream | None = None
        self._shard: tuple[int, int] | None = None
        self._pending: dict[str, Any] | None = None

    def shard_seed(self, shard: int, shards: int) -> int:
        """The seed of shard ``shard`` of ``shards``: ``seed`` for one shard, else a hash of
        ``(seed, shard, shards)`` so that the shards' denoisers and noise are independent."""
        if shards == 1:
            return self.seed
        digest = hashlib.sha256(f"ul2.torch.IterableDataset {self.seed} {shard} {shards}".encode()).digest()
        return int.from_bytes(digest[:8], "little")

    def shard_documents(self, shard: int, shards: int) -> Iterable[Any]:
        """Shard ``shard``'s documents: every ``shards``-th of a fresh ``make_documents()``."""
        return itertools.islice(iter(self.make_documents()), shard, None, shards)

    def stream(self, shard: int, shards: int) -> DenoisingStream:
        """A fresh ``DenoisingStream`` of shard ``shard`` of ``shards`` at the current epoch (what
        that worker iterates)."""
        return self._new_stream(self.shard_documents(shard, shards), shard, shards, self.epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch) % (1 << 64)

    def set_epoch(self, epoch: int) -> None:
        """Makes every later iteration draw epoch ``epoch``'s denoisers and noise, as ``epoch=``
        would (call it before each epoch, as with ``DistributedSampler``). It reaches the
        ``DataLoader`` workers, persistent ones too: the epoch is held in shared memory."""
        self._new_stream(iter(()), 0, 1, epoch)
        self._epoch.fill_(_signed(epoch))

    def _new_stream(self, documents: Iterable[Any], shard: int, shards: int, epoch: int) -> DenoisingStream:
        options = {**self.stream_options, "seed": self.shard_seed(shard, shards), "epoch": epoch}
        return DenoisingStream(documents, self.mixture, sentinels=self.sentinels, **options)

    def _where(self) -> tuple[int, int]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None and self.worker_threads is not None:
            set_num_threads(self.worker_threads)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[dict[str, npt.NDArray[Any]]]:
        shard, shards = self._where()
        stream = self.stream(shard, shards)
        pending, self._pending = self._pending, None
        if pending is not None:
            if (pending["shard"], pending["shards"]) != (shard, shards):
                raise ValueError(
                    f"state: saved by shard {pending['shard']} of {pending['shards']}, loaded into shard "
                    f"{shard} of {shards}; resume with the same world_size and num_workers"
                )
            if pending["stream"] is not None:
                stream.load_state_dict(pending["stream"])
        self._stream, self._shard = stream, (shard, shards)
        # A plain generator, not the stream: StatefulDataLoader would otherwise restore the
        # iterator too; the dataset's state_dict() is the one place the state lives.
        return _items(stream)

    def state_dict(self) -> dict[str, Any]:
        """This worker's place: its shard and its stream's ``state_dict()`` (``None`` before it starts)."""
        if self._stream is None or self._shard is None:
            if self._pending is not None:
                return self._pending
            shard, shards = self._where()
            return {"shard": shard, "shards": shards, "stream": None}
        return {"shard": self._shard[0], "shards": self._shard[1], "stream": self._stream.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Makes the next iteration continue from ``state`` (from ``state_dict()`` in the same shard)."""
        if not isinstance(state, dict) or not {"shard", "shards", "stream"} <= set(state):
            raise ValueError("state: not a ul2.torch.IterableDataset state")
        self._pending = state
        self._stream = self._shard = None

    def __repr__(self) -> str:
        return (
            f"ul2.torch.IterableDataset(rank={self.rank}, world_size={self.world_size}, "
            f"seed={self.seed}, epoch={self.epoch}, worker_threads={self.worker_threads})"
        )


def _items(stream: DenoisingStream) -> Iterator[dict[str, npt.NDArray[Any]]]:
    yield from stream


def _shared_epoch(epoch: int) -> _torch.Tensor:
    # A tensor in shared memory, so that set_epoch in the main process reaches workers forked
    # (or pickled) before it: persistent workers keep their copy of the dataset across epochs.
    import torch

    shared = torch.tensor(_signed(epoch))
    shared.share_memory_()  # type: ignore[no-untyped-call]
    return shared


def _signed(epoch: int) -> int:
    # int64 holds the epoch's 64 bits (epochs from 2**63 as negatives): torch cannot pickle
    # uint64 tensors.
    return epoch - (1 << 64) if epoch >= 1 << 63 else epoch


def _distributed_rank() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _register_iterable() -> None:
    # A virtual subclass of torch's IterableDataset (an ABC), so that DataLoader takes its iterable
    # path; registered on first use so that importing ul2.torch does not import torch.
    from torch.utils.data import IterableDataset as _Iterable

    if not issubclass(IterableDataset, _Iterable):
        _Iterable.register(IterableDataset)


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
    flat = [n for n in names if n in BATCH_FIELDS]
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


def loss_by_denoiser(
    logits: _torch.Tensor,
    labels: Any,
    denoiser: Any,
    num_denoisers: int,
    *,
    ignore_index: int = -100,
    shift: bool = False,
) -> DenoiserLoss:
    """Each denoiser's token cross-entropy of ``logits`` ``[B, T, vocab]`` against ``labels``
    ``[B, T]``, split by the batch's ``denoiser`` (``[B]`` per row, or ``[B, T]`` per token, -1
    on padding), for ``num_denoisers`` denoisers (``len(mixture)``): a
    :class:`ul2.loss.DenoiserLoss` of ``[D]`` tensors, ``sum`` (differentiable, at least
    float32) and ``tokens`` (int64), with ``mean`` per denoiser and ``loss`` over all of them::

        out = model(input_ids=batch["input_ids"], attention_mask=mask)   # no labels: one loss pass
        per = ul2.torch.loss_by_denoiser(out.logits, batch["labels"], batch["denoiser"], len(mixture),
                                         shift=True)                      # decoder-only rows
        per.loss.backward()                                               # the model's own loss
        logged = ul2.loss.DenoiserLoss(per.sum.detach(), per.tokens)
        for t in logged: torch.distributed.all_reduce(t)                  # logged.mean: all ranks'

    A token counts where its label is not ``ignore_index`` and its denoiser is not -1.
    ``shift=True`` is for decoder-only rows whose labels sit under their own tokens (ul2's
    ``"decoder"`` format, as Hugging Face causal LMs take them): the logits at ``t`` predict the
    label (and the per-token denoiser) at ``t + 1``; the labels are shifted (as Hugging Face's
    causal-LM loss does it), not the logits, so no ``[B, T - 1, vocab]`` copy is made. One
    ``cross_entropy`` over all tokens, then ``index_add`` into the denoisers, with no
    data-dependent shapes. ``labels`` and ``denoiser`` may be NumPy arrays and may live on
    another device (they are moved to the logits'). The range checks of the denoiser indices
    and counted labels read two flags back from the device in one transfer (a sync, as
    ``loss.item()`` is).
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    labels, denoiser = (_as_tensor(a).to(logits.device) for a in (labels, denoiser))
    check_arguments(
        (tuple(logits.shape), str(logits.dtype), logits.is_floating_point()),
        (tuple(labels.shape), str(labels.dtype), _is_integer(labels)),
        (tuple(denoiser.shape), str(denoiser.dtype), _is_integer(denoiser)),
        num_denoisers,
    )
    b, t, vocab = logits.shape
    given = denoiser
    labels = labels.long()
    denoiser = (denoiser[:, None] if denoiser.ndim == 1 else denoiser).long().expand(b, t)
    if shift:
        # Padded, then cut: labels [B, T] again, the last one ignored (also when T is 0).
        labels = F.pad(labels, (0, 1), value=ignore_index)[:, 1:]
        denoiser = F.pad(denoiser, (0, 1), value=-1)[:, 1:]
    counted = (labels != ignore_index) & (denoiser >= 0)
    bad_denoiser, bad_label = torch.stack(
        [
            ((given < -1) | (given >= num_denoisers)).any(),
            (counted & ((labels < 0) | (labels >= vocab))).any(),
        ]
    ).tolist()
    if bad_denoiser:
        raise out_of_range(int(given.min()), int(given.max()), num_denoisers)
    if bad_label:
        raise ValueError(f"labels: a counted label is outside the vocabulary [0, {vocab}) of the logits")
    nll = F.cross_entropy(
        logits.reshape(b * t, vocab),
        torch.where(counted, labels, ignore_index).reshape(-1),
        ignore_index=ignore_index,
        reduction="none",
    )
    # Uncounted tokens have a loss of 0, so any denoiser can take them.
    index = denoiser.clamp(min=0).reshape(-1)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    sums = torch.zeros(num_denoisers, dtype=dtype, device=logits.device).index_add(0, index, nll.to(dtype))
    tokens = torch.zeros(num_denoisers, dtype=torch.int64, device=logits.device).index_add(
        0, index, counted.reshape(-1).long()
    )
    return DenoiserLoss(sums, tokens)


def _is_integer(t: _torch.Tensor) -> bool:
    import torch

    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


# What HF's DataCollatorWithFlattening puts under each example's first token (its separator_id).
_SEPARATOR = -100


def padding_free(batch: Mapping[str, Any], *, bidirectional: bool = True) -> dict[str, Any]:
    """A decoder-only (``format="decoder"``) batch in Hugging Face's padding-free form, the
    output of ``transformers.DataCollatorWithFlattening(return_flash_attn_kwargs=True)``: the
    real tokens of every example one after the other in one row, no padding.

    - ``input_ids``, ``labels``, ``position_ids``: ``[1, T]`` int64, ``T`` the batch's real
      tokens; the examples are the rows, or with packed rows each row's segments
      (``segment_ids``), in order; ``position_ids`` restart at 0 in each example.
    - ``cu_seq_lens_q`` = ``cu_seq_lens_k``: ``[N + 1]`` int32, the examples' offsets in the row;
      ``max_length_q`` = ``max_length_k``: the longest example, an ``int``.

    ``labels`` are the batch's, but each example's first is -100, as that collator sets it: the
    model shifts the labels, so the first label would be predicted from the previous example's
    last token. ul2's examples begin with their inputs, labelled -100 already, so this changes
    a label only of an example without inputs.

    The FlashAttention kernels these keys drive (``attn_implementation="flash_attention_2"``
    and later) attend causally inside each example and cannot attend both ways over a prefix
    (flash-attention #682), so the prefix-LM attention of ul2's rows is lost: ``bidirectional``
    must be ``False`` to accept that for a batch with a prefix (``bidirectional_mask`` or
    ``prefix_lengths``), whose prefix is then attended causally. :func:`block_mask` keeps it.
    Models on other attention implementations find the examples from ``position_ids`` only
    with ``use_cache=False`` (transformers 5: a cache turns that detection off, and the
    examples would attend each other).
    """
    import torch

    _check_flag(bidirectional, "bidirectional")
    _check_batch(batch)
    if bidirectional and ("bidirectional_mask" in batch or "prefix_lengths" in batch):
        raise ValueError(
            "bidirectional=True: the padding-free form drives FlashAttention's varlen kernels, which "
            "attend causally and cannot attend both ways over the prefix (flash-attention #682); pass "
            "bidirectional=False to attend the prefix causally, or use ul2.torch.block_mask"
        )
    ids, labels, real = _rows(batch, ("input_ids", "labels", "attention_mask"))
    segments = _segments(batch, real)
    real = real.bool()
    rows = torch.arange(real.shape[0], device=real.device)[:, None].expand(real.shape)[real]
    total = rows.numel()
    if total == 0:
        raise ValueError("batch['attention_mask']: no real token in the batch (all 0)")
    new = torch.ones(total, dtype=torch.bool, device=real.device)
    new[1:] = rows[1:] != rows[:-1]
    if segments is not None:
        flat = segments[real]
        new[1:] |= flat[1:] != flat[:-1]
    starts = new.nonzero().squeeze(1)
    offsets = torch.cat([starts, starts.new_tensor([total])])
    lengths = offsets.diff()
    position_ids = torch.arange(total, device=real.device) - starts.repeat_interleave(lengths)
    flat_labels = labels[real].long()
    flat_labels[starts] = _SEPARATOR
    cu_seq_lens = offsets.to(torch.int32)
    longest = int(lengths.max())
    return {
        "input_ids": ids[real].long()[None],
        "labels": flat_labels[None],
        "position_ids": position_ids[None],
        "cu_seq_lens_q": cu_seq_lens,
        "cu_seq_lens_k": cu_seq_lens,
        "max_length_q": longest,
        "max_length_k": longest,
    }


def block_mask(
    batch: Mapping[str, Any], *, bidirectional: bool = True, block_size: int = 128
) -> PrefixLMBlockMask:
    """The FlexAttention ``BlockMask`` of a decoder-only (``format="decoder"``) batch, for
    ``torch.nn.attention.flex_attention`` or a Hugging Face model loaded with
    ``attn_implementation="flex_attention"`` (as its ``attention_mask``).

    It allows what :func:`ul2.torch.attention_mask_4d` allows: query ``q`` attends key ``k``
    when ``k`` is a real token (``attention_mask``), both are in the same example
    (``segment_ids`` of packed rows) and either ``k <= q`` or, with ``bidirectional``, both
    lie in the example's prefix (``bidirectional_mask``, or the first ``prefix_lengths``
    positions). Its ``mask_mod`` reads those ``[B, S]`` fields; which ``block_size`` by
    ``block_size`` blocks are empty, full or partial comes from running sums over them (each
    example must be one run of its segment id, as ul2 packs them), so no ``[S, S]`` mask is
    made, dense or boolean; the blocks are those ``create_block_mask`` would find. ``block_size``:
    128 is what FlexAttention's GPU kernels take by default.

    The mask is built on the batch's device. ``to(device)`` moves it whole (``BlockMask.to``
    would leave the tensors of the ``mask_mod`` behind), and it pickles, so it may be built
    in ``DataLoader`` workers. Padding queries attend nothing (FlexAttention gives them 0).
    PyTorch 2.15 runs FlexAttention on the CPU for inference only (it refuses gradients there).
    """
    import torch

    from ._flex import block_mask as build

    _check_flag(bidirectional, "bidirectional")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size={block_size!r}: must be an int >= 1")
    _check_batch(batch)
    (real,) = _rows(batch, ("attention_mask",))
    segments = _segments(batch, real)
    real = real.bool()
    prefix = None
    if bidirectional:
        if "bidirectional_mask" in batch:
            (prefix,) = _rows(batch, ("bidirectional_mask",), real.shape)
            prefix = prefix.to(real.device).bool()
        elif "prefix_lengths" in batch:
            lengths = _tensor(batch, "prefix_lengths", (real.shape[0],)).to(real.device)
            prefix = torch.arange(real.shape[1], device=real.device)[None, :] < lengths[:, None]
        else:
            raise ValueError(
                "batch: needs 'bidirectional_mask' or 'prefix_lengths' for a bidirectional prefix "
                "(or pass bidirectional=False)"
            )
    return build(real, segments, prefix, block_size)


def _check_flag(value: Any, name: str) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}={value!r}: must be a bool")


def _check_batch(batch: Any) -> None:
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch: expected a dict of arrays or tensors, got {type(batch).__name__}")


def _tensor(batch: Mapping[str, Any], name: str, shape: tuple[int | str, ...]) -> _torch.Tensor:
    """Field ``name`` as an integer tensor of ``shape`` (a name stands for any size)."""
    if name not in batch:
        raise ValueError(f"batch: no {name!r}; expected a decoder-only batch (format='decoder')")
    t = _as_tensor(batch[name])
    if t.ndim != len(shape) or any(
        isinstance(n, int) and n != m for n, m in zip(shape, t.shape, strict=True)
    ):
        hint = " (a 4-D mask: give the 2-D padding mask)" if t.ndim == 4 else ""
        expected = ", ".join(map(str, shape))
        raise ValueError(f"batch[{name!r}]: shape {tuple(t.shape)}, expected ({expected}){hint}")
    if t.is_floating_point() or t.is_complex():
        raise TypeError(f"batch[{name!r}]: dtype {t.dtype}, expected integers")
    return t


def _rows(
    batch: Mapping[str, Any], names: tuple[str, ...], shape: tuple[int, ...] | None = None
) -> list[_torch.Tensor]:
    """The fields ``names`` as ``[B, S]`` tensors of one shape (``shape``, or the first's)."""
    out = []
    for name in names:
        t = _tensor(batch, name, ("B", "S") if shape is None else shape)
        shape = tuple(t.shape)
        out.append(t)
    return out


def _segments(batch: Mapping[str, Any], real: _torch.Tensor) -> _torch.Tensor | None:
    """Packed rows' ``segment_ids`` (``None`` for unpacked rows), each example one run."""
    import torch

    if "segment_ids" not in batch:
        return None
    (segments,) = _rows(batch, ("segment_ids",), tuple(real.shape))
    segments = segments.to(real.device)
    runs = 1 + (segments[:, 1:] != segments[:, :-1]).sum(dim=1)
    ordered = segments.sort(dim=1).values
    ids = 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(dim=1)
    split = torch.nonzero(runs != ids)
    if split.numel():
        raise ValueError(
            f"batch['segment_ids']: row {int(split[0, 0])} has an example in more than one run; "
            "each example's tokens must be consecutive (as ul2 packs them)"
        )
    return segments
