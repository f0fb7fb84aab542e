"""Training-ready shards from a ``DenoisingDataset``: resumable, byte-identical across restarts.

``prepare(ds, out, shard_size=4096)`` writes item ranges ``[i*S, (i+1)*S)`` of ``ds`` as shard
``i`` (``shard-00000/<feature>.npy``, or ``shard-00000.parquet``) and a ``manifest.json``: the
dataset's configuration (mixture via ``Mixture.to_dict``, budgets, seed, format, sentinels),
what the caller adds (tokenizer, corpus, inputs), the plan, counts (items, samples, tokens used,
tail, denoisers) and one entry per finished shard.

Every item is a pure function of ``(seed, k)``, so a shard's bytes do not depend on when or
where it is written. Each shard is written to a temporary name and renamed into place, then
recorded by one appended line in ``progress.jsonl`` (with each file's size); the manifest
(replaced atomically) is written at the start and at the end with every finished shard. A
restart with the same configuration reads both, checks each recorded shard's files and sizes,
and writes the missing or damaged shards only, so an interrupted and resumed job leaves the same
files as an uninterrupted one. A different configuration in the same folder, or other tokens
(the job records their length and a fingerprint), is an error; ``overwrite=True`` starts over,
deleting only the files prepare writes, and only in a folder it wrote (never one that holds an
input). One run at a time holds a folder (an exclusive ``flock`` on ``.ul2-prepare.lock``).

Each run appends its figures to the manifest's ``runs``: its seconds and its phases, the ones
the caller measured before (``phases=``, e.g. ``Corpus.phases``: reading and tokenizing), then
``denoise`` (ul2's own work, building the shards' arrays: raw tokens/s), ``write`` (bytes/s) and
``other`` (the rest: checks, fingerprints, the manifest), which add up to the run's seconds.

``lean=True`` writes only what the arrays are derived from: each shard holds the denoised token
buffers (``first``: the inputs, or the decoder-only sequence; ``second``: the targets, padded,
before the labels' -100), the segment table (``segments``: denoiser, inputs and targets per
example) and ``row_starts`` (row ``r`` holds segments ``row_starts[r]:row_starts[r + 1]``).
``ul2.shards`` reads them back through the formatter that built the full arrays, so what it
returns is those arrays, byte for byte (the manifest's ``features``, in their order). For
T5 span corruption that is about 1.1x the bytes of the tokens used, against 2.4x (and more
for packed or decoder-only rows) for the full arrays. Parquet shards are always full.

``engine="ray"`` runs the shards as Ray tasks (each worker needs the output folder on a shared
file system); Ray is imported only then.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import mmap
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast

import numpy as np
import numpy.typing as npt

from ._ul2 import __version__
from .dataset import DenoisingDataset
from .plan import Plan

if TYPE_CHECKING:
    from typing_extensions import NotRequired

MANIFEST = "manifest.json"
PROGRESS = "progress.jsonl"
LOCK = ".ul2-prepare.lock"
# Every name prepare writes in its folder (shards, their temporaries, the manifest's temporary):
# the only entries that overwrite=True deletes.
OWN_FILES = re.compile(
    r"manifest\.json|progress\.jsonl|shard-\d{5,}(\.parquet)?|\.tmp-shard-\d{5,}.*|\.manifest\.json\.\d+\.tmp"
)
FORMATS = ("npy", "parquet")
# What a lean shard holds (``DenoisingDataset``'s rows before naming); ``second`` only when
# encoder-decoder.
LEAN_ARRAYS = ("first", "second", "segments", "row_starts")
ENGINES = ("local", "ray")


class Fingerprint(TypedDict):
    """What ``token_fingerprint`` records of a token stream."""

    length: int
    sha256: str
    sampled: bool


class PlanEntry(TypedDict):
    """One denoiser's row of the manifest's plan."""

    denoiser: str
    rate: float
    raw_length: int
    inputs_length: int
    targets_length: int
    spans: int
    sentinels: int


class ShardSeconds(TypedDict):
    """What one shard cost: building its arrays, and writing them."""

    denoise: float
    write: float


class ShardEntry(TypedDict):
    """A finished shard: its items and samples (``[start, stop)``), what it used and holds."""

    index: int
    path: str
    items: list[int]
    samples: list[int]
    tokens_used: int
    denoisers: list[int]
    bytes: int
    files: dict[str, int]
    seconds: NotRequired[ShardSeconds]  # write_shard's answer only: the run's phases take it


class RunEntry(TypedDict):
    """One run of a job (``manifest["runs"]``): when it started, its seconds, the shards it
    wrote, and its phases, each with its seconds (the rest of each is its counts and rates)."""

    started: str
    seconds: float
    shards: int
    phases: dict[str, dict[str, Any]]


class Counts(TypedDict):
    """Totals over the finished shards; ``tail`` once every shard is there."""

    shards: int
    items: int
    samples: int
    tokens_used: int
    tail: int | None
    stream_length: int
    denoisers: dict[str, int]
    bytes: int
    # The tokens used at the shards' dtype, and what the shards take for each of their bytes.
    token_bytes: int
    bytes_per_token_byte: float


class Config(TypedDict):
    """What identifies a job: a resume must find the same."""

    job: dict[str, Any]
    dataset: dict[str, Any]  # describe_dataset's
    shard_size: int
    output_format: str
    lean: bool
    items: int
    ul2_version: str


class DatasetSummary(TypedDict):
    stream_length: int
    samples: int
    items: int
    tail: int


class Manifest(TypedDict):
    """``manifest.json``. ``shards``, ``complete`` and ``counts`` are there once written."""

    ul2_version: str
    created: str
    config: Config
    plan: list[PlanEntry]
    dataset: DatasetSummary
    features: dict[str, Any]
    num_shards: int
    shards: NotRequired[list[ShardEntry]]
    complete: NotRequired[bool]
    counts: NotRequired[Counts]
    runs: NotRequired[list[RunEntry]]


ProgressFn = Callable[[ShardEntry, Manifest], None]


# A fingerprint hashes every token of a stream up to FINGERPRINT_ALL tokens, and of a longer one
# (a memmap of 10^9 tokens) FINGERPRINT_BLOCKS equally spaced blocks of FINGERPRINT_BLOCK tokens,
# the first and the last included: 4 MiB read, a few milliseconds, whatever the length.
FINGERPRINT_ALL = 1 << 24
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK = 1024, 1024


def token_fingerprint(tokens: npt.ArrayLike) -> Fingerprint:
    """Length and SHA-256 of ``tokens``' values (as little-endian int64, so that another dtype
    or a list holding the same values gives the same fingerprint): of every token up to
    ``FINGERPRINT_ALL``, else of equally spaced blocks (``sampled``). A sampled fingerprint
    misses a change that falls between its blocks; it catches another file, another
    tokenization (which shifts every block), a file cut short or appended to."""
    flat = np.asarray(tokens).reshape(-1)
    n = len(flat)
    h = hashlib.sha256(f"ul2-tokens-v1 {n}".encode())
    sampled = n > FINGERPRINT_ALL
    if sampled:
        starts = [i * (n - FINGERPRINT_BLOCK) // (FINGERPRINT_BLOCKS - 1) for i in range(FINGERPRINT_BLOCKS)]
        blocks = [(s, s + FINGERPRINT_BLOCK) for s in starts]
    else:
        blocks = [(s, min(n, s + (1 << 20))) for s in range(0, n, 1 << 20)]  # bounded copies
    # A memmap would read ahead around each block (128 KiB a block, the whole cost when cold):
    # for these reads only, the mapping is advised as random access.
    mapping = getattr(tokens, "_mmap", None) if sampled else None
    if mapping is not None:
        mapping.madvise(mmap.MADV_RANDOM)
    try:
        for lo, hi in blocks:
            h.update(flat[lo:hi].astype("<i8").tobytes())
    finally:
        if mapping is not None:
            mapping.madvise(mmap.MADV_NORMAL)
    return {"length": n, "sha256": h.hexdigest(), "sampled": sampled}


def describe_dataset(ds: DenoisingDataset) -> dict[str, Any]:
    """The configuration that determines ``ds``'s items (JSON-ready), its tokens' fingerprint
    and its document offsets' included."""
    s = ds.sentinels
    ids = [int(i) for i in s.ids]
    offsets = ds.doc_offsets
    return {
        "tokens": token_fingerprint(ds.tokens),
        "doc_offsets": None if offsets is None else token_fingerprint(offsets),
        "mixture": ds.mixture.to_dict(),
        # The budget as given (rebuilding from it gives this dataset) and the targets width
        # the plan resolved it to.
        **ds.budget,
        "targets_width": ds.targets_length,
        "format": ds.format,
        "pack": ds.pack,
        "bidirectional_mask": ds.bidirectional_mask,
        "documents": ds.documents,
        "fields": None if ds.options["fields"] is None else list(ds.options["fields"]),
        "separator_id": ds.separator_id,
        "seed": ds.seed,
        "eos_id": ds.eos_id,
        "pad_id": ds.pad_id,
        "dtype": str(ds.dtype),
        "sentinels": {
            "count": s.count,
            "vocab_size": s.vocab_size,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
            "on_overflow": s.on_overflow,
        },
    }


def corpus_too_small(ds: DenoisingDataset) -> ValueError:
    """The error for a dataset with no example (one wording everywhere), with the minimum."""
    need = min(r.raw_length for r in ds.plan())
    return ValueError(
        f"the corpus is too small: {ds.stream_length:,} tokens, and one example of this plan needs at "
        f"least {need:,}"
    )


def plan_entries(table: Plan, rates: Sequence[float]) -> list[PlanEntry]:
    """The plan as the manifest and ``ul2 plan --json`` record it: a row per denoiser, its rate
    normalised."""
    total = sum(rates)
    return [
        {
            "denoiser": r.denoiser.label,
            "rate": rates[i] / total,
            "raw_length": r.raw_length,
            "inputs_length": r.inputs_length,
            "targets_length": r.targets_length,
            "spans": r.spans,
            "sentinels": r.sentinels,
        }
        for i, r in enumerate(table)
    ]


def shard_name(index: int, output_format: str) -> str:
    return f"shard-{index:05d}" + (".parquet" if output_format == "parquet" else "")


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _write_json(path: Path, value: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    os.replace(tmp, path)


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in [*b, *(k for k in a if k not in b)]:  # the new configuration's order
            d = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(x, y, f"{where}[{i}]")
            if d:
                return d
        return None
    if a != b:
        return f"{where}: {json.dumps(a)[:60]} != {json.dumps(b)[:60]}"
    return None


def _save_npy(out: dict[str, npt.NDArray[Any]], folder: Path) -> None:
    """One ``.npy`` per feature: ``np.save``'s bytes (the version 1.0 header, then the data), not
    through ``ndarray.tofile``, which turns a Ctrl-C that arrives in its ``os.PathLike`` check
    into a TypeError (numpy 2.4); ``write`` lets the KeyboardInterrupt through."""
    for name, array in out.items():
        a = np.ascontiguousarray(array)
        with (folder / f"{name}.npy").open("wb") as f:
            np.lib.format.write_array_header_1_0(f, np.lib.format.header_data_from_array_1_0(a))
            f.write(a.data)


def _save_parquet(out: dict[str, npt.NDArray[Any]], path: Path, rows: int) -> None:
    import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]
    import pyarrow.parquet as pq  # type: ignore[import-untyped,import-not-found,unused-ignore]

    columns = {}
    for name, a in out.items():
        if a.ndim == 2 and a.shape[0] == rows:
            flat = pa.array(np.ascontiguousarray(a).reshape(-1))
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, a.shape[1])
        elif a.ndim == 1 and a.shape[0] == rows:
            columns[name] = pa.array(a)
        # Batch-level arrays (cu_seqlens) do not fit one row per item; they follow from segment ids.
    pq.write_table(pa.table(columns), path, compression="zstd")


def write_shard(
    ds: DenoisingDataset,
    out_dir: str | Path,
    index: int,
    start: int,
    stop: int,
    output_format: str = "npy",
    lean: bool = False,
) -> ShardEntry:
    """Write items ``[start, stop)`` of ``ds`` as shard ``index`` (atomically; its arrays, or with
    ``lean`` its rows before naming) and return its manifest entry, with ``"seconds"`` (a
    ``ShardSeconds``) added, which ``prepare`` takes out into the run's phases. Module-level so
    that a Ray worker can run it."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    ids = np.arange(start, stop, dtype=np.int64)
    batch = ds.denoised(ids) if lean else ds.batch(ids)
    t1 = time.perf_counter()
    name = shard_name(index, output_format)
    final = out_dir / name
    tmp = out_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            if output_format == "npy":
                tmp.mkdir()
                _save_npy(batch, tmp)
            else:
                _save_parquet(batch, tmp, stop - start)
        except OSError as e:  # e.g. a full disk: numpy says only "8192 requested and 2016 written"
            raise OSError(
                f"{final}: writing the shard failed ({e.strerror or e}); is the disk full?"
            ) from None
        if final.is_dir():  # left by a run that stopped between the rename and the manifest
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    t2 = time.perf_counter()
    if ds.pack:
        s0, s1 = ds.samples(start).start, ds.samples(stop - 1).stop
        which = [ds.denoiser(k) for k in range(s0, s1)]
    else:
        s0, s1 = start, stop
        which = (batch["segments"][:, 0] if lean else batch["denoiser"]).tolist()
    used = 0
    for k in range(s0, s1):
        lo, hi = ds.span(k)
        used += hi - lo
    counts = np.bincount(np.asarray(which, dtype=np.int64), minlength=len(ds.mixture)).tolist()
    files = shard_files(final)
    entry: ShardEntry = {
        "index": index,
        "path": name,
        "items": [start, stop],
        "samples": [s0, s1],
        "tokens_used": used,
        "denoisers": counts,
        "bytes": sum(files.values()),
        "files": files,
    }
    # What follows the write (the counts) is ul2's bookkeeping of the same arrays: denoising.
    entry["seconds"] = {"denoise": t1 - t0 + time.perf_counter() - t2, "write": t2 - t1}
    return entry


def shard_files(shard: Path) -> dict[str, int]:
    """A shard's files and their sizes: what a resume expects to find."""
    if shard.is_dir():
        return {f.name: f.stat().st_size for f in sorted(shard.iterdir())}
    return {shard.name: shard.stat().st_size} if shard.is_file() else {}


def _features(ds: DenoisingDataset, output_format: str) -> dict[str, Any]:
    probe = ds.batch(np.arange(min(2, len(ds)), dtype=np.int64))
    rows = min(2, len(ds))
    feats = {}
    for name, a in probe.items():
        per_item = a.shape[0] == rows and a.ndim in (1, 2)
        if output_format == "parquet" and not per_item:
            continue
        shape = [None, *a.shape[1:]] if per_item else [None]
        feats[name] = {"dtype": str(a.dtype), "shape": shape, "per_item": per_item}
    return feats


def prepare(
    ds: DenoisingDataset,
    out: str | Path,
    *,
    shard_size: int = 4096,
    output_format: str = "npy",
    job: Mapping[str, Any] | None = None,
    max_items: int | None = None,
    max_shards: int | None = None,
    engine: str = "local",
    lean: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    on_start: Callable[[Manifest], None] | None = None,
    phases: Mapping[str, Mapping[str, Any]] | None = None,
) -> Manifest:
    """Write ``ds``'s items (the first ``max_items``) to ``out`` in shards of ``shard_size``
    items, resuming a previous run of the same job there; returns the manifest.

    ``job`` is recorded and compared on resume along with the dataset's own configuration.
    ``lean=True`` writes only the arrays the others are derived from (``ul2.shards`` reads them
    back as the full arrays; npy only). ``max_shards`` stops after writing that many shards (the
    manifest says ``complete: false``; run again to continue). ``progress(shard_entry, manifest)``
    is called after each shard, ``on_start(manifest)`` once the work to do is known;
    ``manifest["runs"][-1]`` is this run's entry, its phases up to date at each call.

    ``phases`` are what the caller measured before this call (name -> a mapping with
    ``"seconds"``, e.g. ``Corpus.phases``), recorded first among this run's phases and counted in
    its seconds.
    """
    start = time.perf_counter()
    before = _check_phases(phases)
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size={shard_size!r}: must be an int >= 1")
    if output_format not in FORMATS:
        raise ValueError(f"output_format={output_format!r}: expected one of {FORMATS}")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
    if not isinstance(lean, bool):
        raise ValueError(f"lean={lean!r}: must be True or False")
    if lean and output_format != "npy":
        raise ValueError(
            f"lean=True with output_format={output_format!r}: lean shards are .npy files only "
            "(a Parquet shard holds one row per item, and a packed item's segments are several)"
        )
    if output_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("output_format='parquet' needs pyarrow (pip install 'ul2[arrow]')") from None
    out = Path(out)
    n_items = len(ds) if max_items is None else min(len(ds), max_items)
    if n_items == 0:
        raise corpus_too_small(ds)
    n_shards = -(-n_items // shard_size)
    config: Config = _json_ready(
        {
            "job": dict(job or {}),
            "dataset": describe_dataset(ds),
            "shard_size": shard_size,
            "output_format": output_format,
            "lean": lean,
            "items": n_items,
            "ul2_version": __version__,  # another version may write other bytes: no mixing
        }
    )
    check_folder(out, _input_paths(ds, config["job"]), overwrite)
    with _locked(out):
        if overwrite:
            _delete_own_files(out)
        clock = _Clock(before, start)
        return _run(
            ds, out, config, n_items, n_shards, output_format, max_shards, engine, progress, on_start, clock
        )


OWN_PHASES = ("denoise", "write", "other")


def _check_phases(phases: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """``phases`` as JSON-ready dicts, each with its ``seconds`` a number >= 0."""
    if phases is None:
        return {}
    if not isinstance(phases, Mapping):
        raise ValueError(f"phases={phases!r}: expected a mapping of phase name -> {{'seconds': ...}}")
    out = {}
    for name, phase in phases.items():
        if not isinstance(name, str) or name in OWN_PHASES:
            raise ValueError(
                f"phases={dict(phases)!r}: {name!r}: a phase is named by a str other than {OWN_PHASES}, "
                "which prepare measures itself"
            )
        seconds = phase.get("seconds") if isinstance(phase, Mapping) else None
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ValueError(f"phases={dict(phases)!r}: {name!r} needs 'seconds', a finite number >= 0")
        out[name] = _json_ready(dict(phase))
    return out


class _Clock:
    """This run's entry (``RunEntry``) as its shards finish. The run began when the phases
    ``before`` began: ``start`` (``perf_counter`` when prepare was called) less their seconds."""

    def __init__(self, before: dict[str, dict[str, Any]], start: float) -> None:
        self.start, self.earlier = start, sum(p["seconds"] for p in before.values())
        began = time.time() - (time.perf_counter() - start) - self.earlier
        self.entry: RunEntry = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
            "seconds": self.earlier,
            "shards": 0,
            "phases": {
                **before,
                "denoise": {"seconds": 0.0, "tokens": 0, "tokens_per_s": 0.0},
                "write": {"seconds": 0.0, "bytes": 0, "bytes_per_s": 0.0},
                "other": {"seconds": 0.0},
            },
        }

    def add(self, shard: ShardEntry) -> None:
        """Count ``shard`` (its ``seconds`` taken out: the manifest's entries do not vary)."""
        seconds = shard.pop("seconds")
        phases = self.entry["phases"]
        self.entry["shards"] += 1
        phases["denoise"]["seconds"] += seconds["denoise"]
        phases["denoise"]["tokens"] += shard["tokens_used"]
        phases["write"]["seconds"] += seconds["write"]
        phases["write"]["bytes"] += shard["bytes"]
        self.close()

    def close(self) -> None:
        """The run's seconds until now, the rates, and ``other``: what the named phases leave."""
        phases = self.entry["phases"]
        denoise, write = phases["denoise"], phases["write"]
        denoise["tokens_per_s"] = denoise["tokens"] / max(denoise["seconds"], 1e-9)
        write["bytes_per_s"] = write["bytes"] / max(write["seconds"], 1e-9)
        self.entry["seconds"] = self.earlier + time.perf_counter() - self.start
        named = sum(p["seconds"] for name, p in phases.items() if name != "other")
        # Ray's shards overlap, and their summed seconds can pass the wall clock's.
        phases["other"]["seconds"] = max(0.0, self.entry["seconds"] - named)


def _run(
    ds: DenoisingDataset,
    out: Path,
    config: Config,
    n_items: int,
    n_shards: int,
    output_format: str,
    max_shards: int | None,
    engine: str,
    progress: ProgressFn | None,
    on_start: Callable[[Manifest], None] | None,
    clock: _Clock,
) -> Manifest:
    shard_size, lean = config["shard_size"], config["lean"]
    manifest_path = out / MANIFEST
    found: Manifest | None = None
    done: dict[int, ShardEntry] = {}
    if manifest_path.exists():
        found = read_manifest(manifest_path)
        old: dict[str, Any] = dict(found.get("config") or {})
        before = (old.get("job") or {}).get("corpus", {}).get("fingerprint")
        now = config["job"].get("corpus", {}).get("fingerprint")
        if before != now:
            raise ValueError(
                f"{out}: the inputs changed since this job started (their tokens differ); "
                "use another --out or --overwrite"
            )
        for what in ("tokens", "doc_offsets"):
            a, b = (old.get("dataset") or {}).get(what), config["dataset"][what]
            if a != b:
                raise ValueError(
                    f"{out}: holds a job over other tokens ({what}: {json.dumps(a)} != {json.dumps(b)}); "
                    "use another --out or --overwrite"
                )
        diff = _first_difference(old, dict(config))
        if diff:
            raise ValueError(f"{out}: holds a different job ({diff}); use another --out or --overwrite")
        done = {s["index"]: s for s in [*found.get("shards", []), *read_progress(out)]}
        # A shard counts as done only if its files are there, whole: else it is written again.
        done = {
            i: s
            for i, s in done.items()
            if i < n_shards and s.get("files") and shard_files(out / s["path"]) == s["files"]
        }
    for stale in out.glob(".tmp-*"):  # partial shards of an interrupted run
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    manifest: Manifest = found or {
        "ul2_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": config,
        "plan": plan_entries(ds.plan(), ds.mixture.rates),
        "dataset": {
            "stream_length": ds.stream_length,
            "samples": ds.num_samples,
            "items": len(ds),
            "tail": ds.tail,
        },
        "features": _features(ds, output_format),
        "num_shards": n_shards,
    }
    manifest["ul2_version"] = __version__
    manifest["runs"] = [*manifest.get("runs", []), clock.entry]

    def save() -> None:
        # The manifest holds every finished shard; the progress file is then redundant.
        manifest["shards"] = [done[i] for i in sorted(done)]
        _finish(manifest, ds, n_items, n_shards)
        clock.close()
        _write_json(manifest_path, manifest)
        (out / PROGRESS).unlink(missing_ok=True)

    save()
    todo = [i for i in range(n_shards) if i not in done]
    if max_shards is not None:
        todo = todo[: max(0, max_shards)]
    if on_start is not None:
        on_start(manifest)

    log = (out / PROGRESS).open("a")

    def record(entry: ShardEntry) -> None:
        # One line per finished shard, appended after its rename: a restart reads them back.
        # (Rewriting the manifest after each shard would cost O(shards^2) for a large corpus.)
        clock.add(entry)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        done[entry["index"]] = entry
        if progress is not None:
            progress(entry, manifest)

    bounds = {i: (i * shard_size, min(n_items, (i + 1) * shard_size)) for i in todo}
    try:
        if engine == "local":
            for i in todo:
                record(write_shard(ds, out, i, *bounds[i], output_format, lean))
        else:
            _run_ray(ds, out, todo, bounds, output_format, lean, record)
    except BaseException:
        log.close()
        save()  # e.g. Ctrl-C: the manifest lists what is done (the progress file did already)
        raise
    log.close()
    save()
    return manifest


def _input_paths(ds: DenoisingDataset, job: Mapping[str, Any]) -> list[Path]:
    """The files the job reads: those the job names (the command line's inputs) and the file
    under a memmap of tokens."""
    paths = [Path(s["path"]) for s in job.get("inputs", []) if isinstance(s, dict) and "path" in s]
    filename = getattr(ds.tokens, "filename", None)
    if filename is not None:
        paths.append(Path(filename))
    return [p.resolve() for p in paths]


def _is_prepare_folder(out: Path) -> bool:
    """Whether ``out`` is a folder ``prepare`` wrote: it holds the lock file prepare creates
    before anything else, or a manifest of prepare's own shape."""
    if (out / LOCK).is_file():
        return True
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and {"ul2_version", "config", "num_shards"} <= manifest.keys()


def check_folder(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse, before any work, an ``out`` that is a file, that overlaps an input (``inputs``
    resolved), or that holds files of someone else's."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a folder; --out names the folder for the shards")
    where = out.resolve()
    for p in inputs:
        if p == where or where in p.parents:
            raise ValueError(f"{out}: holds an input ({p}); use another --out")
        if p.is_dir() and p in where.parents:
            raise ValueError(
                f"{out}: is inside the input folder {p} (its shards would become inputs); use another --out"
            )
    if out.is_dir() and not _is_prepare_folder(out) and any(out.iterdir()):
        what = (
            "--overwrite deletes only a folder that ul2 prepare wrote" if overwrite else "use another --out"
        )
        raise ValueError(f"{out}: exists and is not a ul2 prepare folder (no {MANIFEST}); {what}")


@contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold ``out`` for this run: an exclusive ``flock`` on its lock file (released when the
    process ends, however it ends), which records the holder's pid for the error message."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK).open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            raise ValueError(
                f"{out}: another ul2 prepare (pid {pid}) is writing to this folder; "
                "wait for it to finish or use another --out"
            ) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def _delete_own_files(out: Path) -> None:
    for p in out.iterdir():
        if OWN_FILES.fullmatch(p.name):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def read_manifest(path: Path) -> Manifest:
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: unreadable manifest ({e}); use --overwrite to start over") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict):
        raise ValueError(
            f"{path}: not a ul2 prepare manifest (a JSON {type(manifest).__name__} without 'config'); "
            "use --overwrite to start over"
        )
    return cast(Manifest, manifest)  # its config is compared key by key before anything else is read


def read_progress(out: Path) -> list[ShardEntry]:
    """Shard entries of the progress file; a line cut short by a crash is ignored."""
    path = out / PROGRESS
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def _finish(manifest: Manifest, ds: DenoisingDataset, n_items: int, n_shards: int) -> None:
    """Totals over the finished shards; ``complete`` once every shard is there."""
    shards = manifest["shards"]
    used = sum(s["tokens_used"] for s in shards)
    per = np.zeros(len(ds.mixture), dtype=np.int64)
    for s in shards:
        per += np.asarray(s["denoisers"], dtype=np.int64)
    complete = len(shards) == n_shards
    manifest["complete"] = complete
    manifest["counts"] = {
        "shards": len(shards),
        "items": sum(s["items"][1] - s["items"][0] for s in shards),
        "samples": sum(s["samples"][1] - s["samples"][0] for s in shards),
        "tokens_used": used,
        # Tokens of the stream that no written sample uses (ds.tail when every item is written).
        "tail": ds.stream_length - used if complete else None,
        "stream_length": ds.stream_length,
        "denoisers": {
            f"{i}: {p['denoiser']}": int(c)
            for i, (p, c) in enumerate(zip(manifest["plan"], per, strict=True))
        },
        "bytes": sum(s["bytes"] for s in shards),
        "token_bytes": used * ds.dtype.itemsize,
        "bytes_per_token_byte": sum(s["bytes"] for s in shards) / max(1, used * ds.dtype.itemsize),
    }
    if complete and n_items == len(ds) and ds.stream_length - used != ds.tail:
        raise RuntimeError(
            f"accounting: {used} tokens used + tail {ds.tail} != stream length {ds.stream_length}"
        )


def _run_ray(
    ds: DenoisingDataset,
    out: Path,
    todo: list[int],
    bounds: dict[int, tuple[int, int]],
    output_format: str,
    lean: bool,
    record: Callable[[ShardEntry], None],
) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray (pip install 'ul2[ray]'); or use --engine local") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    # Ray's overloads of remote() take a TypedDict-returning function for one of four arguments.
    task: Any = ray.remote(write_shard)
    ds_ref = ray.put(ds)  # the dataset pickles by its arguments (memmaps by file name)
    pending = [task.remote(ds_ref, str(out), i, *bounds[i], output_format, lean) for i in todo]
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        for ref in finished:
            record(ray.get(ref))
