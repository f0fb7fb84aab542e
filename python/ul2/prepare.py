"""Training-ready shards from a ``DenoisingDataset``: resumable, byte-identical across restarts.

``prepare(ds, out, shard_size=4096)`` writes item ranges ``[i*S, (i+1)*S)`` of ``ds`` as shard
``i`` (``shard-00000/<feature>.npy``, or ``shard-00000.parquet``) and a ``manifest.json``: the
dataset's configuration (mixture via ``Mixture.to_dict``, budgets, seed, format, sentinels),
what the caller adds (tokenizer, corpus, inputs), the plan, counts (items, samples, tokens used,
tail, denoisers) and one entry per finished shard.

Every item is a pure function of ``(seed, k)``, so a shard's bytes do not depend on when or
where it is written. Each shard is written to a temporary name and renamed into place, then
recorded by one appended line in ``progress.jsonl``; the manifest (replaced atomically) is
written at the start and at the end with every finished shard. A restart with the same
configuration reads both and writes the missing shards only, so an interrupted and resumed job
leaves the same files as an uninterrupted one. A different configuration in the same folder is
an error (``overwrite=True`` starts over).

``engine="ray"`` runs the shards as Ray tasks (each worker needs the output folder on a shared
file system); Ray is imported only then.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._ul2 import __version__
from .dataset import DenoisingDataset
from .plan import _label

MANIFEST = "manifest.json"
PROGRESS = "progress.jsonl"
FORMATS = ("npy", "parquet")
ENGINES = ("local", "ray")
ProgressFn = Callable[[dict[str, Any], dict[str, Any]], None]


def describe_dataset(ds: DenoisingDataset) -> dict[str, Any]:
    """The configuration that determines ``ds``'s items (JSON-ready)."""
    s = ds.sentinels
    ids = [int(i) for i in s.ids]
    return {
        "mixture": ds.mixture.to_dict(),
        "inputs_length": ds.inputs_length,
        "targets_length": ds.targets_length,
        "sequence_length": ds.sequence_length,
        "format": ds.format,
        "pack": ds.pack,
        "bidirectional_mask": ds._args["bidirectional_mask"],
        "documents": ds.documents,
        "separator_id": ds._args["separator_id"],
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


def _plan_rows(ds: DenoisingDataset) -> list[dict[str, Any]]:
    rates = ds.mixture.rates
    total = sum(rates)
    return [
        {
            "denoiser": _label(r.denoiser),
            "rate": rates[i] / total,
            "raw_length": r.raw_length,
            "inputs_length": r.inputs_length,
            "targets_length": r.targets_length,
            "spans": r.spans,
            "sentinels": r.sentinels,
        }
        for i, r in enumerate(ds.plan())
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
    for name, array in out.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)


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
    ds: DenoisingDataset, out_dir: str | Path, index: int, start: int, stop: int, output_format: str = "npy"
) -> dict[str, Any]:
    """Write items ``[start, stop)`` of ``ds`` as shard ``index`` (atomically) and return its
    manifest entry. Module-level so that a Ray worker can run it."""
    out_dir = Path(out_dir)
    batch = ds.batch(np.arange(start, stop, dtype=np.int64))
    name = shard_name(index, output_format)
    final = out_dir / name
    tmp = out_dir / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
    try:
        if output_format == "npy":
            tmp.mkdir()
            _save_npy(batch, tmp)
        else:
            _save_parquet(batch, tmp, stop - start)
        if final.is_dir():  # left by a run that stopped between the rename and the manifest
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
    if ds.pack:
        s0, s1 = ds.samples(start).start, ds.samples(stop - 1).stop
        which = [ds.denoiser(k) for k in range(s0, s1)]
    else:
        s0, s1 = start, stop
        which = batch["denoiser"].tolist()
    used = 0
    for k in range(s0, s1):
        lo, hi = ds.span(k)
        used += hi - lo
    counts = np.bincount(np.asarray(which, dtype=np.int64), minlength=len(ds.mixture)).tolist()
    size = sum(f.stat().st_size for f in final.iterdir()) if final.is_dir() else final.stat().st_size
    return {
        "index": index,
        "path": name,
        "items": [start, stop],
        "samples": [s0, s1],
        "tokens_used": used,
        "denoisers": counts,
        "bytes": size,
    }


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
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Write ``ds``'s items (the first ``max_items``) to ``out`` in shards of ``shard_size``
    items, resuming a previous run of the same job there; returns the manifest.

    ``job`` is recorded and compared on resume along with the dataset's own configuration.
    ``max_shards`` stops after writing that many shards (the manifest says ``complete: false``;
    run again to continue). ``progress(shard_entry, manifest)`` is called after each shard,
    ``on_start(manifest)`` once the work to do is known.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size={shard_size!r}: must be an int >= 1")
    if output_format not in FORMATS:
        raise ValueError(f"output_format={output_format!r}: expected one of {FORMATS}")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: expected one of {ENGINES}")
    if output_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ValueError("output_format='parquet' needs pyarrow (pip install 'ul2[arrow]')") from None
    out = Path(out)
    n_items = len(ds) if max_items is None else min(len(ds), max_items)
    if n_items == 0:
        raise ValueError(
            f"the corpus gives no examples: {ds.stream_length} tokens, fewer than one sample needs"
        )
    n_shards = -(-n_items // shard_size)
    config = _json_ready(
        {
            "job": dict(job or {}),
            "dataset": describe_dataset(ds),
            "shard_size": shard_size,
            "output_format": output_format,
            "items": n_items,
            "ul2_version": __version__,  # another version may write other bytes: no mixing
        }
    )
    manifest_path = out / MANIFEST
    if overwrite and out.exists():
        shutil.rmtree(out)
    manifest: dict[str, Any]
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{manifest_path}: unreadable manifest ({e.msg}); use --overwrite to start over"
            ) from None
        old = manifest.get("config") or {}
        before = (old.get("job") or {}).get("corpus", {}).get("fingerprint")
        now = config["job"].get("corpus", {}).get("fingerprint")
        if before != now:
            raise ValueError(
                f"{out}: the inputs changed since this job started (their tokens differ); "
                "use another --out or --overwrite"
            )
        diff = _first_difference(old, config)
        if diff:
            raise ValueError(f"{out}: holds a different job ({diff}); use another --out or --overwrite")
        done = {s["index"]: s for s in [*manifest.get("shards", []), *_read_progress(out)]}
        done = {i: s for i, s in done.items() if (out / s["path"]).exists() and i < n_shards}
    else:
        if out.exists() and any(p.name != MANIFEST and not p.name.startswith(".") for p in out.iterdir()):
            raise ValueError(
                f"{out}: exists and is not a ul2 prepare folder (no {MANIFEST}); use another --out"
            )
        out.mkdir(parents=True, exist_ok=True)
        done = {}
        manifest = {}
    for stale in out.glob(".tmp-*"):  # partial shards of an interrupted run
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    if not manifest:
        manifest = {
            "ul2_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": config,
            "plan": _plan_rows(ds),
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

    def save() -> None:
        # The manifest holds every finished shard; the progress file is then redundant.
        manifest["shards"] = [done[i] for i in sorted(done)]
        _finish(manifest, ds, n_items, n_shards)
        _write_json(manifest_path, manifest)
        (out / PROGRESS).unlink(missing_ok=True)

    save()
    todo = [i for i in range(n_shards) if i not in done]
    if max_shards is not None:
        todo = todo[: max(0, max_shards)]
    if on_start is not None:
        on_start(manifest)

    log = (out / PROGRESS).open("a")

    def record(entry: dict[str, Any]) -> None:
        # One line per finished shard, appended after its rename: a restart reads them back.
        # (Rewriting the manifest after each shard would cost O(shards^2) for a large corpus.)
        log.write(json.dumps(entry) + "\n")
        log.flush()
        done[entry["index"]] = entry
        if progress is not None:
            progress(entry, manifest)

    bounds = {i: (i * shard_size, min(n_items, (i + 1) * shard_size)) for i in todo}
    try:
        if engine == "local":
            for i in todo:
                record(write_shard(ds, out, i, *bounds[i], output_format))
        else:
            _run_ray(ds, out, todo, bounds, output_format, record)
    except BaseException:
        log.close()
        save()  # e.g. Ctrl-C: the manifest lists what is done (the progress file did already)
        raise
    log.close()
    save()
    return manifest


def _read_progress(out: Path) -> list[dict[str, Any]]:
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


def _finish(manifest: dict[str, Any], ds: DenoisingDataset, n_items: int, n_shards: int) -> None:
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
    record: Callable[[dict[str, Any]], None],
) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray (pip install 'ul2[ray]'); or use --engine local") from None
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    task = ray.remote(write_shard)
    ds_ref = ray.put(ds)  # the dataset pickles by its arguments (memmaps by file name)
    pending = [task.remote(ds_ref, str(out), i, *bounds[i], output_format) for i in todo]
    while pending:
        finished, pending = ray.wait(pending, num_returns=1)
        for ref in finished:
            record(ray.get(ref))
