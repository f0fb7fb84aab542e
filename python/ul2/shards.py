"""Reading ``ul2 prepare``'s shards: ``Shards(folder)[i]`` (or ``load(folder, i)``) is shard ``i``'s
arrays, a dict of the manifest's ``features`` in their order, whichever way it was written.

A full ``.npy`` shard's files are mapped (``numpy.load(mmap_mode="r")``), a Parquet shard's
columns read; a lean shard (``prepare(lean=True)``, ``ul2 prepare --lean``) holds only the
denoised token buffers and the segment table, and its arrays are rebuilt by the formatter that
wrote the full ones: the same bytes, names, dtypes and shapes. Each shard's files are checked
against the sizes the manifest recorded, and a lean shard's arrays against each other, so a
damaged shard is a ``ValueError`` naming its file, never wrong arrays.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _ul2
from .prepare import (
    FORMATS,
    LEAN_ARRAYS,
    MANIFEST,
    Manifest,
    ShardEntry,
    read_manifest,
    read_progress,
    shard_files,
)

Arrays = dict[str, npt.NDArray[Any]]


class Shards:
    """The shards of a ``ul2 prepare`` folder: ``len`` is the job's number of shards, ``[i]``
    shard ``i``'s arrays (an unwritten shard of an unfinished job is a ``ValueError``),
    iteration every shard in order."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise ValueError(f"{self.folder}: no {MANIFEST}; not a ul2 prepare folder")
        self.manifest: Manifest = read_manifest(path)
        config = self.manifest["config"]
        self.output_format: str = config.get("output_format", "")
        self.lean: bool = bool(config.get("lean", False))
        if self.output_format not in FORMATS:
            raise ValueError(f"{path}: output_format={self.output_format!r}: expected one of {FORMATS}")
        written = self.manifest.get("ul2_version")
        if self.lean and written != _ul2.__version__:
            # The formatter defines what a lean shard's arrays are: only the version that wrote
            # them is known to rebuild the same ones.
            raise ValueError(
                f"{path}: lean shards written by ul2 {written}; this is ul2 {_ul2.__version__}, "
                "which may derive other arrays from them: read them with that version"
            )
        self.features: dict[str, Any] = self.manifest["features"]
        self.dataset: dict[str, Any] = config["dataset"]
        entries = [*self.manifest.get("shards", []), *read_progress(self.folder)]
        self._entries: dict[int, ShardEntry] = {s["index"]: s for s in entries}

    def __len__(self) -> int:
        return int(self.manifest["num_shards"])

    def __iter__(self) -> Iterator[Arrays]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> Arrays:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index={index!r}: must be an int")
        n = len(self)
        i = int(index) + n if index < 0 else int(index)
        if not 0 <= i < n:
            raise IndexError(f"index={index}: out of range for {n} shards")
        entry = self._entries.get(i)
        if entry is None:
            raise ValueError(f"{self.folder}: shard {i} is not written yet; run the same ul2 prepare again")
        path = self.folder / entry["path"]
        found = shard_files(path)
        if found != entry["files"]:
            raise ValueError(
                f"{path}: its files ({found}) are not the ones the manifest records ({entry['files']}); "
                "run the same ul2 prepare again to rewrite it"
            )
        try:
            if self.lean:
                return self._lean(path)
            return self._npy(path) if self.output_format == "npy" else self._parquet(path)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    def _npy(self, path: Path) -> Arrays:
        return {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in self.features}

    def _parquet(self, path: Path) -> Arrays:
        import pyarrow.parquet as pq  # type: ignore[import-untyped,import-not-found,unused-ignore]

        table = pq.read_table(path)
        out = {}
        for name, feature in self.features.items():
            column = table.column(name).combine_chunks()
            dtype, shape = np.dtype(feature["dtype"]), feature["shape"]
            flat = column.flatten() if len(shape) == 2 else column
            out[name] = flat.to_numpy().astype(dtype, copy=False).reshape(-1, *shape[1:])
        return out

    def _lean(self, path: Path) -> Arrays:
        stored = {
            name: np.load(path / f"{name}.npy", mmap_mode="r")
            for name in LEAN_ARRAYS
            if name != "second" or (path / "second.npy").exists()
        }
        d = self.dataset
        out = _ul2._format_rows(
            d["format"],
            d["pad_id"],
            d["pack"],
            d["bidirectional_mask"],
            list(self.features),
            stored["first"],
            stored.get("second"),
            stored["segments"],
            stored["row_starts"],
        )
        got = {name: (str(a.dtype), list(a.shape[1:])) for name, a in out.items()}
        want = {name: (f["dtype"], list(f["shape"][1:])) for name, f in self.features.items()}
        if list(got.items()) != list(want.items()):
            raise ValueError(f"its arrays {got} are not the manifest's features {want}")
        return out


def load(folder: str | Path, index: int) -> Arrays:
    """Shard ``index`` of the ``ul2 prepare`` folder ``folder``: ``Shards(folder)[index]``."""
    return Shards(folder)[index]
