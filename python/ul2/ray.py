"""Ray Data adapter: preprocess a corpus of token rows into denoised rows on a cluster.

:func:`denoise` maps a ``ray.data.Dataset`` with a token column (a list of ids per row, one
training row each) and a stable row-id column through :class:`ul2.Collator` with
``map_batches``. Each row's example key is its row id, so the output is the same however Ray
splits the data into blocks and batches and however many workers run it; write it with
``write_parquet``::

    rows = ray.data.read_parquet("tokens/")                  # columns: id, tokens
    collator = ul2.Collator(ul2.presets.ul2(), sentinels=..., inputs_length=512, targets_length=512)
    ul2.ray.denoise(rows, collator).write_parquet("denoised/")

Output columns are the collator's (``input_ids``, ``labels``, ... as fixed-size lists), plus
the id column unless ``pack=True`` (a packed row holds several examples). ``import ul2`` does
not import Ray; this module imports it inside its functions.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ._ul2 import set_num_threads
from .arrow import batch_rows
from .collate import BATCH_FIELDS, Collator

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
    import ray.data

__all__ = ["denoise"]


class _DenoiseBatch:
    """The ``map_batches`` function: a pyarrow batch of token rows in, a table of denoised rows out."""

    def __init__(
        self, collator: Collator, tokens_column: str, id_column: str, num_threads: int | None
    ) -> None:
        self.collator, self.tokens_column, self.id_column = collator, tokens_column, id_column
        self.num_threads = num_threads
        self._pid: int | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

        for col, arg in ((self.tokens_column, "tokens_column"), (self.id_column, "id_column")):
            if col not in batch.column_names:
                raise KeyError(f"{arg}={col!r}: no such column; the rows have {batch.column_names}")
        if self._pid != os.getpid():
            self._pid = os.getpid()
            if self.num_threads is not None:
                set_num_threads(self.num_threads)
        ids = batch.column(self.id_column).to_numpy()
        if ids.dtype.kind not in "iu" or (ids.dtype.kind == "i" and (ids < 0).any()):
            raise ValueError(f"{self.id_column}: row ids must be integers >= 0, got {ids.dtype}")
        out = self.collator(batch_rows(batch.column(self.tokens_column)), ids.astype(np.uint64))
        columns: dict[str, Any] = {}
        if not self.collator.pack:
            columns[self.id_column] = batch.column(self.id_column)
        for name, a in out.items():
            if name not in BATCH_FIELDS:
                columns[name] = _column(a)
        return pa.table(columns)


def _column(a: npt.NDArray[Any]) -> Any:
    """A 1-D array as is, a 2-D one as a fixed-size list column over the same buffer."""
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    if a.ndim == 1:
        return pa.array(a)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), a.shape[1])


def denoise(
    dataset: ray.data.Dataset,
    collator: Collator,
    *,
    tokens_column: str = "tokens",
    id_column: str = "id",
    batch_size: int = 1024,
    num_threads: int | None = 1,
    **map_batches_kwargs: Any,
) -> ray.data.Dataset:
    """``dataset`` (rows with ``tokens_column``: a list of token ids, and ``id_column``: a stable
    integer row id >= 0, the example key) mapped through ``collator`` with ``map_batches``.

    Every row must fit its drawn denoiser's planned raw length (``ul2.plan``), as with the
    collator. ``num_threads`` is ul2's thread count inside each Ray worker (one per task CPU by
    default; ``None`` leaves ul2's default). ``map_batches_kwargs`` go to ``map_batches``
    (``concurrency``, ``num_cpus``, ...)."""
    if not isinstance(collator, Collator):
        raise TypeError(f"collator: expected a ul2.Collator, got {type(collator).__name__}")
    return dataset.map_batches(
        _DenoiseBatch(collator, tokens_column, id_column, num_threads),
        batch_format="pyarrow",
        batch_size=batch_size,
        zero_copy_batch=True,
        **map_batches_kwargs,
    )
