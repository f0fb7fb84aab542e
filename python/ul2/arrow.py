"""Arrow adapter: token ids from a ``pyarrow`` list column (e.g. the ``input_ids`` column of a
tokenised Hugging Face ``datasets.Dataset``), read in place.

A list column is two buffers: the token ids of all rows back to back (``values``) and where
each row starts (``offsets``). :func:`values_and_offsets` views them as NumPy arrays without a
copy; :func:`dataset` makes a :class:`ul2.DenoisingDataset` whose stream is ``values`` and
whose documents are the rows (``doc_offsets=offsets``); :func:`rows` gives each row as a NumPy
view for :class:`ul2.Collator` (:func:`batch_rows`: one 2-D view when all rows have one
length); :class:`Denoise` is a ``datasets.Dataset.map(batched=True, with_indices=True)``
function::

    col = hf_dataset.data.table.column("input_ids")          # a ChunkedArray
    ds = ul2.arrow.dataset(col, ul2.presets.ul2(), sentinels=..., inputs_length=512)
    out = hf_dataset.with_format("arrow").map(ul2.arrow.Denoise(collator), batched=True,
                                              with_indices=True, remove_columns=hf_dataset.column_names)

Row types: list or large_list of int32, int64, uint16 or uint32, without nulls. ``import ul2``
does not import pyarrow; this module imports it inside its functions.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .collate import BATCH_FIELDS, Collator
from .dataset import DenoisingDataset
from .denoisers import Denoiser, Mixture

__all__ = ["Denoise", "batch_rows", "column_of", "dataset", "rows", "values_and_offsets"]

_TOKEN_TYPES = ("int32", "int64", "uint16", "uint32")


def column_of(obj: Any, column: str = "input_ids") -> Any:
    """The list column ``column`` of ``obj`` as a ``pyarrow.Array`` or ``ChunkedArray``: ``obj``
    may be one already, a ``pyarrow.Table`` / ``RecordBatch``, or a ``datasets.Dataset`` (whose
    Arrow table is read in place; a shuffled or selected dataset has an indices mapping, so call
    ``flatten_indices()`` first)."""
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    if isinstance(obj, (pa.Array, pa.ChunkedArray)):
        return obj
    if isinstance(obj, (pa.Table, pa.RecordBatch)):
        return obj.column(column)
    table = getattr(getattr(obj, "data", None), "table", None)  # datasets.Dataset -> datasets.table.Table
    if isinstance(table, pa.Table):
        if getattr(obj, "_indices", None) is not None:
            raise ValueError(
                "dataset: has an indices mapping (after shuffle/select/filter), so its rows are not "
                "its Arrow table's rows; call dataset.flatten_indices() first"
            )
        return table.column(column)
    raise TypeError(
        "column: expected a pyarrow Array, ChunkedArray, Table or a datasets.Dataset, "
        f"got {type(obj).__name__}"
    )


def _chunks(col: Any) -> list[Any]:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    arrays = list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]
    for a in arrays:
        t = a.type
        if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
            raise TypeError(f"column: expected a list or large_list of token ids, got type {t}")
        if str(t.value_type) not in _TOKEN_TYPES:
            raise TypeError(
                f"column: token type {t.value_type} is not supported; use int32, int64, uint16 or uint32"
            )
        if a.null_count or a.values.null_count:
            raise ValueError("column: holds nulls; drop or fill them first")
    return arrays


def _chunk_buffers(a: Any) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    offsets = a.offsets.to_numpy(zero_copy_only=True)
    start, stop = int(offsets[0]), int(offsets[-1])
    values = a.values.slice(start, stop - start).to_numpy(zero_copy_only=True)
    if start:  # a sliced array: offsets count from the start of the full values buffer
        offsets = offsets - offsets.dtype.type(start)
    return values, offsets


def values_and_offsets(column: Any) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """``(values, offsets)`` of a list column with one chunk: NumPy views of its Arrow buffers (no
    copy; read-only). Row ``i`` is ``values[offsets[i]:offsets[i + 1]]``; ``offsets`` has one
    more entry than there are rows, starts at 0 and ends at ``len(values)``."""
    arrays = _chunks(column_of(column))
    if len(arrays) != 1:
        raise ValueError(
            f"column: has {len(arrays)} chunks, whose buffers are not one block of memory; read it "
            "with rows(), combine the chunks (a copy), or write it as one chunk (e.g. "
            "datasets.Dataset.map(..., writer_batch_size=len(dataset)))"
        )
    return _chunk_buffers(arrays[0])


def rows(column: Any) -> list[npt.NDArray[Any]]:
    """Each row of a list column (any number of chunks) as a NumPy view into its Arrow buffer:
    the ragged ``rows`` that :class:`ul2.Collator` reads without a copy."""
    out: list[npt.NDArray[Any]] = []
    for a in _chunks(column_of(column)):
        values, offsets = _chunk_buffers(a)
        bounds = offsets.tolist()
        out.extend([values[start:stop] for start, stop in itertools.pairwise(bounds)])
    return out


def batch_rows(column: Any) -> npt.NDArray[Any] | list[npt.NDArray[Any]]:
    """The rows of a list column as :class:`ul2.Collator` reads them fastest: one 2-D view of
    the values buffer when the column is one chunk of rows of one length (the collator's dense
    path: no object per row), else :func:`rows`. Either gives the collator the same bytes."""
    arrays = _chunks(column_of(column))
    if len(arrays) == 1:
        values, offsets = _chunk_buffers(arrays[0])
        n = len(offsets) - 1
        width = len(values) // n if n else 0
        if width and (np.diff(offsets) == width).all():
            return values.reshape(n, width)
    return rows(column)


def dataset(
    column: Any,
    mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
    *,
    combine_chunks: bool = False,
    **kwargs: Any,
) -> DenoisingDataset:
    """A :class:`ul2.DenoisingDataset` over a list column: its stream is the column's values
    buffer (read in place, never copied) and each row is a document (``doc_offsets``); so
    ``documents="respect"`` keeps samples inside rows and ``separator_id`` joins rows with a
    separator. ``kwargs`` are the dataset's (``sentinels``, ``inputs_length``, ...). A column of
    several chunks is one block of memory only after ``combine_chunks=True``, which copies it."""
    col = column_of(column)
    arrays = _chunks(col)
    if len(arrays) > 1 and combine_chunks:
        import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

        col = pa.chunked_array(arrays).combine_chunks()
    if "doc_offsets" in kwargs:
        raise TypeError("doc_offsets: taken from the column's offsets; do not pass it")
    values, offsets = values_and_offsets(col)
    return DenoisingDataset(values, mixture, doc_offsets=offsets, **kwargs)


class Denoise:
    """A ``datasets.Dataset.map(batched=True, with_indices=True)`` function: denoises each
    batch's ``column`` rows with ``collator`` and returns the collator's columns (``input_ids``,
    ``labels``, ... as 2-D arrays; ``cu_seqlens`` is left out, it is not one value per row).

    Keys are the rows' indices in the dataset (``with_indices=True``), so the output does not
    depend on ``batch_size`` or ``num_proc``; without indices the collator's running counter is
    used. With ``with_format("arrow")`` batches are Arrow tables, read in place, and the output
    is an Arrow table over the collator's buffers (list columns, as ``datasets`` writes 2-D
    arrays, without its conversion: a quarter less CPU for the whole ``map``); otherwise the
    Python lists are read in one pass. Pass ``remove_columns=dataset.column_names`` (needed
    when ``pack=True`` changes the number of rows)."""

    def __init__(self, collator: Collator, column: str = "input_ids") -> None:
        if not isinstance(collator, Collator):
            raise TypeError(f"collator: expected a ul2.Collator, got {type(collator).__name__}")
        self.collator, self.column = collator, column

    def __call__(self, batch: Any, indices: Sequence[int] | None = None) -> Any:
        import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

        if isinstance(batch, (pa.Table, pa.RecordBatch)):
            row_list: Any = batch_rows(batch.column(self.column))
        elif isinstance(batch, Mapping):
            col = batch[self.column]
            if isinstance(col, (pa.Array, pa.ChunkedArray)):
                row_list = batch_rows(col)
            elif (isinstance(col, np.ndarray) and col.ndim == 2) or type(col) is list:
                row_list = col  # a list of int lists is read in one pass by the collator
            else:
                row_list = [np.asarray(r) for r in col]
        else:
            raise TypeError(
                f"batch: expected a dict of columns or a pyarrow Table, got {type(batch).__name__}"
            )
        keys = None if indices is None else np.asarray(indices, dtype=np.uint64)
        out = {name: a for name, a in self.collator(row_list, keys).items() if name not in BATCH_FIELDS}
        return _table(out) if isinstance(batch, (pa.Table, pa.RecordBatch)) else out

    def __repr__(self) -> str:
        return f"ul2.arrow.Denoise({self.collator!r}, column={self.column!r})"


def _table(arrays: Mapping[str, npt.NDArray[Any]]) -> Any:
    """The collator's arrays as a ``pyarrow.Table`` over their buffers (no copy): a 2-D array is
    a list column whose offsets step by its width, the type ``datasets`` gives 2-D arrays."""
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    columns = {}
    for name, a in arrays.items():
        if a.ndim == 2:
            large = a.size >= 2**31  # past int32 offsets
            offsets = np.arange(a.shape[0] + 1, dtype=np.int64 if large else np.int32) * a.shape[1]
            lists = pa.LargeListArray if large else pa.ListArray
            columns[name] = lists.from_arrays(pa.array(offsets), pa.array(a.reshape(-1)))
        else:
            columns[name] = pa.array(a)
    return pa.table(columns)
