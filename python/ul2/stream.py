"""Denoised examples of a stream of documents (a streaming dataset, any iterator of token arrays)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _ul2
from .collate import Options, dtype_name, native, one_example, options
from .denoisers import Denoiser, Mixture, as_mixture

if TYPE_CHECKING:
    from typing_extensions import Unpack

STATE_VERSION = 1


class DenoisingStream:
    """The examples of ``DenoisingDataset(np.concatenate(documents), doc_offsets=...)``, from
    documents that arrive one at a time.

    ``documents`` is any iterable of 1-D int32/int64/uint16/uint32 token arrays (a generator, a
    Hugging Face streaming dataset's column, webdataset shards ...). Sample ``k`` draws its
    denoiser from ``(seed, k)`` and takes the next planned-raw-length tokens of the stream,
    exactly as ``DenoisingDataset`` does: ``documents_mode="concat"`` joins the documents
    (``separator_id`` between them when given), ``"respect"`` never lets a sample cross a
    document's end (its last sample is shorter). Iterating yields what ``ds[k]`` gives (1-D
    arrays; packed rows with ``pack=True``) or, with ``batch_size``, what ``ds.batch(...)`` gives
    for the next ``batch_size`` items (the last batch may be smaller), byte for byte. After the
    last item, ``tail`` counts the stream tokens no sample uses.

    The tokens are buffered, sampled and denoised in Rust; Python only pulls the documents.
    Memory: the tokens of the current document plus those not yet emitted (the items of one
    batch and fewer than one raw length that no sample has taken yet), never the stream.
    ``buffered`` says how many tokens are held.

    ``state_dict()`` after any item, and ``load_state_dict(state)`` on a stream built with the
    same arguments before it starts, continue the stream exactly. The state holds the next
    sample's key, the documents read, the offset into the document to read next, the few tokens
    before it not yet emitted, a fingerprint of the configuration and, when ``documents`` has
    ``state_dict()`` / ``load_state_dict()`` (``datasets.IterableDataset``), its state before
    that document. ``column``: each item of ``documents`` is a mapping (a dataset's example) and
    its ``column`` is the document. To resume, build the stream again over the source opened from its start (a
    new generator, the same dataset object): a source with a state of its own is loaded from the
    saved one; any other is read from its start and the documents before the resume point are
    skipped (read and dropped).
    """

    def __init__(
        self,
        documents: Iterable[npt.ArrayLike],
        /,
        mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
        *,
        sentinels: _ul2.Sentinels,
        documents_mode: str = "concat",
        separator_id: int | None = None,
        batch_size: int | None = None,
        column: str | None = None,
        **given: Unpack[Options],
    ) -> None:
        if "documents" in given:
            raise TypeError(
                f"documents={given['documents']!r}: DenoisingStream takes the mode as documents_mode= "  # type: ignore[typeddict-item]
                "(its first argument is the documents)"
            )
        if documents_mode not in ("concat", "respect"):
            raise ValueError(f"documents_mode={documents_mode!r}: must be 'concat' or 'respect'")
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1 or None")
        self.source = documents
        self.column = column
        self._stateful = hasattr(documents, "state_dict") and hasattr(documents, "load_state_dict")
        self.mixture = as_mixture(mixture)
        self.sentinels = sentinels
        self.documents_mode, self.separator_id, self.batch_size = documents_mode, separator_id, batch_size
        self.options = options(given, "DenoisingStream")
        self.seed: int = self.options["seed"]
        self.pack: bool = self.options["pack"]
        self.dtype = np.dtype(dtype_name(self.options["dtype"]))
        engine = native(self.mixture, sentinels, self.options)
        try:
            self._core = _ul2._Stream(engine, documents_mode, separator_id)
        except ValueError as e:
            raise ValueError(str(e).replace("documents='concat'", "documents_mode='concat'")) from None
        self.format: str = self._core.format
        self._it: Iterator[npt.ArrayLike] | None = None
        self._skip = 0  # documents of a reopened source to drop (no state of its own)
        self._source_state: Any = None  # the source's state before the last document read

    @property
    def raw_lengths(self) -> list[int]:
        """Planned raw length of each denoiser of the mixture."""
        return self._core.raw_lengths

    @property
    def fingerprint(self) -> str:
        """SHA-256 of everything that fixes the examples (mixture, sentinels, options, mode)."""
        config = {
            "mixture": self.mixture.to_dict(),
            "sentinels": {
                "ids": [int(i) for i in self.sentinels.ids],
                "on_overflow": self.sentinels.on_overflow,
                "check_collisions": self.sentinels.check_collisions,
            },
            "options": {**self.options, "dtype": dtype_name(self.options["dtype"])},
            "documents_mode": self.documents_mode,
            "separator_id": self.separator_id,
        }
        return hashlib.sha256(json.dumps(config, sort_keys=True, default=repr).encode()).hexdigest()

    def __iter__(self) -> Iterator[dict[str, npt.NDArray[Any]]]:
        return self

    def _pull(self) -> bool:
        """Pushes the next document into the core; ``False`` when the source is exhausted."""
        first = self._it is None
        if self._it is None:
            self._it = iter(self.source)
            for _ in range(self._skip):
                if next(self._it, _END) is _END:
                    break
        # Before the first document the state is the start (or the one loaded): a dataset's
        # state_dict() is reset only once its iterator runs (HF keeps the last pass's until then).
        before = (
            self.source.state_dict()  # type: ignore[attr-defined]
            if self._stateful and not (first and self._skip == 0)
            else self._source_state
        )
        doc: Any = next(self._it, _END)
        if doc is _END:
            self._core.finish()
            return False
        self._source_state = before
        self._core.push(doc if self.column is None else doc[self.column])
        return True

    def __next__(self) -> dict[str, npt.NDArray[Any]]:
        n, core = self.batch_size or 1, self._core
        if core.ready < n and not core.finished:
            if self._it is None or self._stateful or self.column is not None:
                while core.ready < n and self._pull():
                    pass
            else:
                it, push = self._it, core.push
                while core.ready < n:
                    doc = next(it, _END)
                    if doc is _END:
                        core.finish()
                        break
                    push(doc)
        out = core.emit(n)
        if out is None:
            raise StopIteration
        if self.batch_size is None:
            return one_example(out)
        return out

    @property
    def counts(self) -> dict[str, int]:
        """``documents`` read, ``samples`` and ``items`` emitted, stream ``tokens`` they used,
        ``tail`` (at the end), ``buffered`` tokens held now."""
        return self._core.counts

    @property
    def tail(self) -> int:
        """Once exhausted: stream tokens no sample uses (0 in ``"respect"`` mode)."""
        return self._core.counts["tail"]

    @property
    def buffered(self) -> int:
        """Tokens the stream holds now."""
        return self._core.counts["buffered"]

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands after the last item it gave (a dict of plain values)."""
        key, document, offset, pending, position, items = self._core.resume_point()
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "key": key,
            "document": document,
            "offset": offset,
            "pending": pending.tolist(),
            "position": position,
            "items": items,
            "source": self._source_state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from ``state_dict()`` of a stream built with the same arguments; call it
        before iterating, with the source opened from its start."""
        if self._it is not None or self._core.counts["documents"]:
            raise ValueError("state: load it before iterating the stream")
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"state: not a DenoisingStream state of version {STATE_VERSION}")
        if state.get("fingerprint") != self.fingerprint:
            raise ValueError(
                "state: saved by a stream of another configuration (mixture, sentinels, options, "
                "documents_mode or separator_id differ); build it with the arguments it was saved with"
            )
        pending = np.asarray(state["pending"], dtype=np.int64)
        self._core.resume(
            state["key"], state["document"], state["offset"], pending, state["position"], state["items"]
        )
        if state["source"] is not None and self._stateful:
            self.source.load_state_dict(state["source"])  # type: ignore[attr-defined]
            self._skip = 0
        else:
            self._skip = state["document"]
        self._source_state = state["source"]

    def __repr__(self) -> str:
        c = self.counts
        return (
            f"DenoisingStream(<{c['documents']} documents read, {c['samples']} samples>, {len(self.mixture)} "
            f"denoisers, format={self.format!r}, pack={self.pack}, documents_mode={self.documents_mode!r}, "
            f"batch_size={self.batch_size}, seed={self.seed})"
        )


_END: Any = object()
