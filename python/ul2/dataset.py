"""Random access to denoised examples of a token stream (a NumPy array or memmap)."""

from __future__ import annotations

import mmap
import operator
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from . import _ul2
from .collate import Options, budget_text, dtype_name, native, one_example, options
from .denoisers import Denoiser, Mixture, as_mixture
from .plan import Plan, plan

if TYPE_CHECKING:
    from typing_extensions import Unpack


def _index(k: object, n: int, name: str) -> int:
    """``k`` as an index into ``n`` items (negative counts from the end), naming ``name``."""
    try:
        i = operator.index(k)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name}={k!r}: must be an int") from None
    if not -n <= i < n:
        raise IndexError(f"{name}={i}: out of range for {n} items")
    return i % n


_Values = TypeVar("_Values")


def _snapshot(values: _Values) -> _Values | npt.NDArray[Any]:
    """A list, tuple or range as one read-only array: the native side would convert it again on
    every access, and see the caller's later edits (or read past a shrunk list's end)."""
    if not isinstance(values, (list, tuple, range)):
        return values
    a = np.asarray(values)
    a.flags.writeable = False
    return a


class DenoisingDataset:
    """The examples of a token stream under a mixture, by index.

    Sample ``k`` draws its denoiser from ``(seed, k)`` and takes the next planned-raw-length
    tokens of the stream, so consecutive samples consume the stream exactly once; the tokens
    left over at the end are ``tail``. ``tokens`` is any 1-D int32/int64/uint16/uint32 array,
    e.g. a ``numpy.memmap`` of a corpus far larger than memory: it is read in place, never
    copied (a list or tuple is converted once, into a read-only array). ``doc_offsets``
    (document starts, optionally ending with ``len(tokens)``) split it into documents:
    ``documents="concat"`` joins them (``separator_id`` between them when given), ``"respect"``
    never lets a sample cross a boundary (each document's last sample is shorter and padded, or
    packed with ``pack=True``).

    ``ds[k]`` is one example (1-D arrays), ``ds.batch(keys)`` a batch (computed in parallel in
    Rust); both carry ``denoiser``, the index into the mixture. With ``pack=True`` the
    dataset's items are packed rows of consecutive samples (``samples(r)`` says which).
    ``budget`` is the budget as given (``targets_length`` may be ``None``: the plan chose it),
    ``targets_length`` the targets width it resolved to; ``plan()`` plans with ``budget``.
    """

    def __init__(
        self,
        tokens: npt.ArrayLike,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: _ul2.Sentinels,
        doc_offsets: npt.ArrayLike | None = None,
        documents: str = "concat",
        separator_id: int | None = None,
        **given: Unpack[Options],
    ) -> None:
        self.tokens, self.doc_offsets = _snapshot(tokens), _snapshot(doc_offsets)
        self.mixture = as_mixture(mixture)
        self.sentinels = sentinels
        self.documents, self.separator_id = documents, separator_id
        self.options = options(given, "DenoisingDataset")
        self.seed: int = self.options["seed"]
        self.eos_id: int | None = self.options["eos_id"]
        self.pad_id: int = self.options["pad_id"]
        self.pack: bool = self.options["pack"]
        self.bidirectional_mask: bool = self.options["bidirectional_mask"]
        self.dtype = np.dtype(dtype_name(self.options["dtype"]))
        self._core = self._native(self.options)
        self.format: str = self._core.format
        # The budget as given: targets_length=None lets the plan choose each denoiser's raw
        # length; planning again with the resolved width below would give CausalLM another one.
        self.budget: dict[str, int | None] = {
            "inputs_length": self.options["inputs_length"],
            "targets_length": self.options["targets_length"],
            "sequence_length": self.options["sequence_length"],
        }
        self.inputs_length = self.options["inputs_length"]
        self.sequence_length = self.options["sequence_length"]
        self.targets_length = self._core.targets_length

    @property
    def _args(self) -> dict[str, Any]:
        """Every argument but the tokens and the mixture, as the constructor takes them."""
        return {
            "sentinels": self.sentinels,
            "doc_offsets": self.doc_offsets,
            "documents": self.documents,
            "separator_id": self.separator_id,
            **self.options,
        }

    def __len__(self) -> int:
        return len(self._core)

    @property
    def epoch(self) -> int:
        return self.options["epoch"]

    def set_epoch(self, epoch: int) -> None:
        """Every draw from now on is epoch ``epoch``'s, as ``epoch=`` would give (call it before
        each epoch, as with ``DistributedSampler``). The denoiser of each sample is drawn anew,
        so the samples' boundaries, and their number, change with the epoch."""
        options: Options = {**self.options, "epoch": epoch}
        self._core, self.options = self._native(options), options

    def _native(self, options: Options) -> _ul2._Dataset:
        """The native index over ``tokens`` under ``options``."""
        engine = native(self.mixture, self.sentinels, options)
        return _ul2._Dataset(self.tokens, engine, self.doc_offsets, self.documents, self.separator_id)

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its arguments in the new process (the index is recomputed, and is the same).
        # A memmap (or a view of one) travels by its file name and place in it: it costs nothing.
        ref = _memmap_ref(self.tokens)
        return (_restore_dataset, (self.tokens if ref is None else ref, self.mixture, self._args))

    def __getitem__(self, k: int) -> dict[str, npt.NDArray[Any]]:
        return one_example(self._core.batch([_index(k, len(self), "k")]))

    def batch(self, keys: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
        """Items ``keys`` as one batch dict of arrays."""
        return self._core.batch(keys)

    def denoised(self, keys: npt.ArrayLike) -> dict[str, npt.NDArray[Any]]:
        """Items ``keys`` before naming, what ``batch`` derives its arrays from (and a lean shard
        stores): ``first`` (``[rows, inputs_length]``, or the decoder-only sequence), ``second``
        (the targets, padded; encoder-decoder only), ``segments`` (``[n, 3]``: each example's
        denoiser, inputs and targets, row after row) and ``row_starts`` (row ``r`` holds
        ``segments[row_starts[r]:row_starts[r + 1]]``)."""
        return self._core.denoised(keys)

    def span(self, k: int) -> tuple[int, int]:
        """Sample ``k``'s raw ``(start, stop)`` in the stream (joined positions when a separator is used)."""
        return self._core.span(_index(k, self.num_samples, "k"))

    def denoiser(self, k: int) -> int:
        """Sample ``k``'s denoiser: an index into ``mixture``."""
        return self._core.denoiser(_index(k, self.num_samples, "k"))

    def samples(self, r: int) -> range:
        """The samples in item ``r`` (one sample unless packed)."""
        return range(*self._core.samples(_index(r, len(self), "r")))

    @property
    def num_samples(self) -> int:
        return self._core.num_samples

    @property
    def index_bytes(self) -> int:
        """Memory the sample index (and pack index) holds, in bytes."""
        return self._core.index_bytes

    @property
    def tail(self) -> int:
        """Tokens at the end of the stream that no sample uses (0 in ``"respect"`` mode)."""
        return self._core.tail

    @property
    def stream_length(self) -> int:
        """Length of the stream the samples cover (tokens, plus separators when used)."""
        return self._core.stream_length

    @property
    def fill_rate(self) -> float:
        """Packed: fraction of output positions holding tokens, over the whole dataset."""
        return self._core.fill_rate

    @property
    def raw_lengths(self) -> list[int]:
        """Planned raw length of each denoiser of the mixture."""
        return self._core.raw_lengths

    def plan(self) -> Plan:
        """The plan of this dataset's mixture and budget: its raw lengths are ``raw_lengths``."""
        return plan(self.mixture, sentinels=self.sentinels, eos=self.eos_id is not None, **self.budget)

    def __repr__(self) -> str:
        return (
            f"DenoisingDataset(<{self.stream_length} tokens, {self.num_samples} samples, tail {self.tail}>, "
            f"{len(self.mixture)} denoisers, {budget_text(self)}, format={self.format!r}, pack={self.pack}, "
            f"documents={self.documents!r}, seed={self.seed})"
        )


class _MemmapRef(NamedTuple):
    """A 1-D memmap view by its file: ``length`` items of ``dtype``, item 0 at byte ``offset`` of
    the file, the next ``stride`` bytes on (negative: towards the file's start)."""

    filename: str
    dtype: str
    offset: int
    length: int
    stride: int

    def open(self) -> npt.NDArray[Any]:
        """The view, an ``np.memmap`` mapped read-only over exactly the bytes it reads."""
        itemsize = np.dtype(self.dtype).itemsize
        step = self.stride // itemsize
        span = (self.length - 1) * abs(step) + 1
        low = self.offset if step > 0 else self.offset + (self.length - 1) * self.stride
        base = np.memmap(self.filename, dtype=np.dtype(self.dtype), mode="r", offset=low, shape=(span,))
        return base[::step] if step > 0 else base[span - 1 :: step]


def _memmap_ref(tokens: object) -> _MemmapRef | None:
    """How a 1-D memmap view travels by reference, or ``None`` when it must travel by value.

    A view's ``offset`` is its parent's, so the view's own place in the file comes from its data
    pointer: np.memmap maps the file from ``offset`` rounded down to ALLOCATIONGRANULARITY, and
    every view shares that mapping (``_mmap``). A copy-on-write map (mode ``"c"``) may hold
    writes the file does not, and a stride that is not a whole number of items (or 0) cannot be
    sliced from a memmap of items, so those go by value.
    """
    if not isinstance(tokens, np.memmap) or tokens.ndim != 1 or tokens.size == 0:
        return None
    mapping = getattr(tokens, "_mmap", None)
    if tokens.filename is None or mapping is None or tokens.mode == "c":
        return None
    (stride,), itemsize = tokens.strides, tokens.itemsize
    if stride == 0 or stride % itemsize:
        return None
    start = tokens.offset - tokens.offset % mmap.ALLOCATIONGRANULARITY
    address = np.frombuffer(mapping, dtype=np.uint8).__array_interface__["data"][0]
    first = tokens.__array_interface__["data"][0] - address
    last = first + (len(tokens) - 1) * stride
    if not (min(first, last) >= 0 and max(first, last) + itemsize <= len(mapping)):
        return None  # not where np.memmap puts its mapping: do not guess
    return _MemmapRef(tokens.filename, tokens.dtype.str, start + first, len(tokens), stride)


def _restore_dataset(tokens: Any, mixture: Mixture, args: dict[str, Any]) -> DenoisingDataset:
    if isinstance(tokens, _MemmapRef):
        tokens = tokens.open()
    return DenoisingDataset(tokens, mixture, **args)
