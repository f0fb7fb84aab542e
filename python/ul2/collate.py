"""The batch transform: rows of token ids in, a dict of padded NumPy arrays out."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt

from . import _ul2
from .denoisers import Denoiser, Mixture, as_mixture

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Options(TypedDict, total=False):
    """The batch transform's options, shared by ``Collator``, ``DenoisingDataset`` and the
    adapters. This is their one declaration: the core reads and checks each under its name.

    - ``inputs_length`` (and ``targets_length``, which defaults to the plan's maximum): an
      encoder-decoder budget; ``sequence_length``: a decoder-only one. Give one of the two.
    - ``eos_id``: appended to inputs and targets (``None``: no EOS); default 1.
    - ``pad_id``: padding of inputs and decoder inputs; default 0.
    - ``format``: ``"hf"`` or ``"seqio"`` (encoder-decoder), ``"decoder"`` or
      ``"seqio_decoder"`` (decoder-only); default ``"hf"``, or ``"decoder"`` for a
      ``sequence_length`` budget.
    - ``seed``, ``epoch``: every draw of example ``k`` comes from ``(seed, epoch, k)``; both
      default to 0, and epoch 0 gives exactly the draws of ``seed`` alone.
    - ``dtype``: ``numpy.int32`` (default) or ``numpy.int64`` outputs.
    - ``pack``: pack consecutive examples into each output row; default ``False``.
    - ``bidirectional_mask``: decoder formats add the per-token mask; default ``False``.
    - ``long_rows``: a row longer than its denoiser's planned raw length (``ul2.plan``) gives
      its first raw-length tokens and the rest are counted in ``stats`` (``"cut"``, the
      default, warned once), or is a ``ValueError`` (``"error"``).
    - ``fields``: the names of the outputs to compute, e.g. ``("input_ids", "attention_mask",
      "labels")`` for a Hugging Face T5, which builds ``decoder_input_ids`` from ``labels``
      itself; the others are neither computed nor allocated. ``None`` (the default): every
      output of the format. A name the format (with ``pack``, ``bidirectional_mask``) does not
      emit is a ``ValueError`` listing those it does. Datasets and streams add ``denoiser``
      whatever ``fields`` says (it is how their items say which denoiser made them); nothing
      else is added, so an adapter that reads a field (e.g. ``segment_ids`` of packed rows)
      needs it named.
    """

    inputs_length: int | None
    targets_length: int | None
    sequence_length: int | None
    eos_id: int | None
    pad_id: int
    format: str | None
    seed: int
    epoch: int
    dtype: npt.DTypeLike
    pack: bool
    bidirectional_mask: bool
    long_rows: str
    fields: Iterable[str] | None


DEFAULTS: Options = {
    "inputs_length": None,
    "targets_length": None,
    "sequence_length": None,
    "eos_id": 1,
    "pad_id": 0,
    "format": None,
    "seed": 0,
    "epoch": 0,
    "dtype": np.int32,
    "pack": False,
    "bidirectional_mask": False,
    "long_rows": "cut",
    "fields": None,
}


# Outputs that describe the whole batch (offsets into its flattened rows), not one row each.
BATCH_FIELDS = ("cu_seqlens", "decoder_cu_seqlens")


def one_example(batch: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """A one-example batch as that example's 1-D arrays (batch-level fields kept whole)."""
    return {name: (a if name in BATCH_FIELDS else a[0]) for name, a in batch.items()}


def options(given: Mapping[str, Any], owner: str) -> Options:
    """``given`` with the defaults filled in; a name that is no option is a ``TypeError``,
    as for any keyword argument."""
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise TypeError(
            f"{owner}() got an unexpected keyword argument {unknown[0]!r}; its options are {sorted(DEFAULTS)}"
        )
    opts: Options = {**DEFAULTS, **given}  # type: ignore[typeddict-item]
    fields = opts["fields"]
    if fields is not None:
        # Read once (an iterator would be empty the next time: set_epoch, pickling).
        if isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
            raise TypeError(
                f"fields={fields!r}: must be an iterable of output names, such as ('input_ids', 'labels')"
            )
        opts["fields"] = tuple(fields)
    return opts


def dtype_name(dtype: npt.DTypeLike) -> str:
    """``"int32"`` or ``"int64"``, as the core reads ``dtype``; anything else is a ``TypeError``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in (np.dtype(np.int32), np.dtype(np.int64)):
        raise TypeError(f"dtype={dtype!r}: must be numpy.int32 or numpy.int64")
    return str(dt)


def budget_text(obj: Any) -> str:
    """The budget of a collator or dataset, as its repr shows it."""
    if obj.sequence_length is not None:
        return f"sequence_length={obj.sequence_length}"
    return f"inputs_length={obj.inputs_length}, targets_length={obj.targets_length}"


def native(mixture: Mixture, sentinels: _ul2.Sentinels, opts: Options) -> _ul2._Collator:
    """The native batch transform for these options (a dataset builds on one too)."""
    native_opts = {**opts, "dtype": dtype_name(opts["dtype"])}
    return _ul2._Collator(mixture.to_dict()["denoisers"], sentinels, native_opts)


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
    Without ``keys``, a running counter numbers the examples. A row longer than the planned
    raw length of its denoiser (see ``ul2.plan``) gives its first raw-length tokens; the rest
    are counted in ``stats`` and warned about once (``long_rows="error"`` refuses such rows).
    ``targets_length`` defaults to the planned maximum of the mixture. The options are
    ``ul2.collate.Options``.

    The work runs in Rust on ul2's thread pool with the GIL released; int32, int64, uint16 and
    uint32 rows are read in place (strided views, Fortran order and misaligned arrays through
    their strides) and the outputs are handed to NumPy without a copy.
    """

    def __init__(
        self,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: _ul2.Sentinels,
        **given: Unpack[Options],
    ) -> None:
        self.mixture = as_mixture(mixture)
        self.sentinels = sentinels
        self.options = options(given, "Collator")
        self._core = native(self.mixture, sentinels, self.options)
        self._warned_cut = False
        self._earlier: dict[str, int] = {}
        self.seed: int = self.options["seed"]
        self.dtype = np.dtype(dtype_name(self.options["dtype"]))
        self.eos_id: int | None = self.options["eos_id"]
        self.pad_id: int = self.options["pad_id"]
        self.pack: bool = self.options["pack"]
        self.format: str = self._core.format
        self.inputs_length: int | None = self._core.inputs_length
        self.targets_length: int | None = self._core.targets_length
        self.sequence_length: int | None = self._core.sequence_length

    def __call__(self, rows: Any, keys: Any = None) -> dict[str, npt.NDArray[Any]]:
        out = self._core(rows, keys)
        if not self._warned_cut and self._core.cut_tokens:
            self._warned_cut = True
            s = self.stats
            warnings.warn(
                f"ul2.Collator: {s['cut_tokens']} tokens of {s['cut_rows']} rows longer than their "
                "denoiser's raw length were cut (long_rows='cut'; counted in collator.stats). To use "
                "every token, feed the token stream to ul2.DenoisingDataset, which gives each denoiser "
                "its raw length; long_rows='error' refuses such rows.",
                stacklevel=2,
            )
        return out

    @property
    def epoch(self) -> int:
        return self.options["epoch"]

    def set_epoch(self, epoch: int) -> None:
        """Draws fresh noise (and denoisers) for every key from now on, as ``epoch=`` would;
        the running key counter and the counts go on."""
        options: Options = {**self.options, "epoch": epoch}
        core = native(self.mixture, self.sentinels, options)
        core._set_next_key(self.next_key)
        self._earlier = self.stats
        self.options, self._core = options, core

    @property
    def stats(self) -> dict[str, int]:
        """Counts over every call: ``rows``, raw ``tokens`` used, ``cut_rows`` and
        ``cut_tokens`` (tokens past a denoiser's raw length), output ``padding`` positions."""
        now = self._core.stats
        return {k: v + self._earlier.get(k, 0) for k, v in now.items()}

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its arguments; the running key counter travels along so a restored
        # collator continues where this one stopped.
        return (_restore_collator, (self.mixture, self._args, self.next_key))

    @property
    def _args(self) -> dict[str, Any]:
        """Every argument but the mixture, as the constructor takes them."""
        return {"sentinels": self.sentinels, **self.options}

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
            f"Collator({self.mixture!r}, sentinels={self.sentinels!r}, {budget_text(self)}, "
            f"eos_id={self.eos_id}, pad_id={self.pad_id}, format={self.format!r}, seed={self.seed}, "
            f"dtype=numpy.{self.dtype}, pack={self.pack})"
        )


def _restore_collator(mixture: Mixture, args: dict[str, Any], next_key: int) -> Collator:
    c = Collator(mixture, **args)
    c._core._set_next_key(next_key)
    return c
