"""``ul2 prepare``: training shards of the input files in a folder, with a manifest; resumable."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..prepare import MANIFEST, Manifest, ShardEntry, check_folder, prepare
from . import options
from .errors import CLIError, interrupted
from .render import console
from .setup import Options, budget_text, corpus_line, load, setup


@dataclass(frozen=True)
class PrepareOptions:
    """``ul2 prepare``'s own options (one field per click parameter, under its name)."""

    inputs: tuple[str, ...]
    out: str
    field: str = "text"
    shard_size: int = 4096
    output_format: str = "npy"
    lean: bool = False
    documents: str = "concat"
    separator: bool = True
    pack: bool = False
    max_items: int | None = None
    max_shards: int | None = None
    engine: str = "local"
    tokenize_workers: int | None = None
    overwrite: bool = False
    quiet: bool = False


@click.command("prepare", short_help="training shards of INPUT... in OUT, with a manifest; resumable")
@click.argument("inputs", nargs=-1)
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="output folder (resumed if it holds this job's manifest)",
)
@options.mixture_options
@options.field
@click.option("--shard-size", type=options.length, default=4096, show_default=True, help="items per shard")
@click.option(
    "--output-format",
    type=click.Choice(["npy", "parquet"]),
    default="npy",
    show_default=True,
    help="one .npy per feature per shard, or one Parquet file per shard",
)
@click.option(
    "--lean",
    is_flag=True,
    help="write only the token buffers and segments (about 1.1x the tokens); ul2.shards derives the rest",
)
@click.option(
    "--documents",
    type=click.Choice(["concat", "respect"]),
    default="concat",
    show_default=True,
    help="join documents, or never let a sample cross one",
)
@click.option(
    "--separator/--no-separator", default=True, show_default=True, help="EOS between joined documents"
)
@click.option("--pack", is_flag=True, help="pack consecutive examples into each row")
@click.option("--max-items", type=options.length, help="write only the first N items")
@click.option(
    "--max-shards", type=click.IntRange(min=0), help="stop after writing N shards (run again to continue)"
)
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="write the shards here, or as Ray tasks",
)
@click.option(
    "--tokenize-workers",
    type=click.IntRange(min=1),
    help="batches of documents tokenized at once, on threads  [default: one per CPU]",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="delete the shards and manifest in OUT (nothing else) and start over",
)
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def command(o: Options, **kw: Any) -> None:
    """Shards of INPUT... (text, JSONL, Parquet, folders; default: the built-in corpus) in OUT:
    one .npy per feature (or Parquet) per shard, manifest.json, resumable."""
    run(o, PrepareOptions(**kw))


def run(o: Options, p: PrepareOptions) -> None:
    """The command. Ctrl-C at any moment of it ends with ``interrupted_error``'s line."""
    try:
        _run(o, p)
    except BaseException as e:
        if not isinstance(e, SystemExit) and interrupted(e):
            raise interrupted_error(Path(p.out)) from None
        raise


def interrupted_error(out: Path) -> CLIError:
    """What an interrupted ``ul2 prepare`` says (exit status 130): how to resume once ``out`` holds
    a manifest (written before the first shard), else that nothing was written."""
    if (out / MANIFEST).is_file():
        return CLIError(
            f"interrupted; the finished shards are recorded in {out / MANIFEST}: run the same "
            "command again to resume",
            130,
        )
    return CLIError(f"interrupted before any shard was written to {out}", 130)


def _run(o: Options, p: PrepareOptions) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    check_folder(Path(p.out), [Path(i).resolve() for i in p.inputs], p.overwrite)
    if p.engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise CLIError(
                "--engine ray needs Ray, which is not installed (pip install 'ul2[ray]'); use --engine local"
            ) from None
    s = setup(o)
    err = console(stderr=True)
    t0 = time.perf_counter()
    corpus = load(s, p.inputs, p.field, p.tokenize_workers)
    s.say()
    sep = s.eos_id if (p.separator and p.documents == "concat") else None
    ds = s.dataset(
        corpus.tokens, doc_offsets=corpus.doc_offsets, documents=p.documents, separator_id=sep, pack=p.pack
    )
    if not p.quiet:
        err.print(
            f"[bold]ul2 prepare[/] — {corpus_line(corpus)} (tokenized in {time.perf_counter() - t0:.1f} s)\n"
            f"  presets.{o.preset}() at {budget_text(s.budget)}, format {ds.format!r}: "
            f"{len(ds):,} {'packed rows' if p.pack else 'examples'}"
        )
    tokenizing = sum(phase["seconds"] for phase in corpus.phases.values())
    job = {
        **s.describe(),
        "inputs": corpus.sources,
        "field": p.field,
        "corpus": {
            "documents": corpus.documents,
            "empty_documents": corpus.empty_documents,
            "tokens": len(corpus.tokens),
            "fingerprint": corpus.fingerprint(),
        },
    }
    progress = Progress(
        TextColumn("[bold]shards"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=p.quiet,
        transient=False,
    )
    state: dict[str, Any] = {"task": None, "tokens": 0, "resumed": 0}

    def on_start(manifest: Manifest) -> None:
        state["started"] = True  # first: a Ctrl-C during start() still stops the display
        progress.start()
        state["resumed"] = manifest["counts"]["shards"]
        state["task"] = progress.add_task(
            "prepare", total=manifest["num_shards"], completed=manifest["counts"]["shards"], rate=""
        )

    def on_shard(entry: ShardEntry, manifest: Manifest) -> None:
        state["tokens"] += entry["tokens_used"]
        phases = manifest["runs"][-1]["phases"]
        rates = (
            f"denoise {phases['denoise']['tokens_per_s'] / 1e6:.2f} M tokens/s, "
            f"write {phases['write']['bytes_per_s'] / 1e6:.0f} MB/s"
        )
        progress.update(state["task"], advance=1, rate=rates)

    try:
        manifest = prepare(
            ds,
            p.out,
            shard_size=p.shard_size,
            output_format=p.output_format,
            lean=p.lean,
            job=job,
            max_items=p.max_items,
            max_shards=p.max_shards,
            engine=p.engine,
            overwrite=p.overwrite,
            progress=on_shard,
            on_start=on_start,
            # Since t0, besides reading and tokenizing: listing the inputs, building the dataset
            # and the job (the corpus's fingerprint).
            phases={**corpus.phases, "setup": {"seconds": time.perf_counter() - t0 - tokenizing}},
        )
    finally:
        if state.get("started"):
            progress.stop()
    c = manifest["counts"]
    this = manifest["runs"][-1]
    resumed = f", {state['resumed']} were already there" if state["resumed"] else ""
    status = (
        "complete"
        if manifest["complete"]
        else f"stopped after --max-shards {p.max_shards}; run again to continue"
    )
    print(f"{p.out}: {c['shards']}/{manifest['num_shards']} shards ({status}{resumed})")
    print(
        f"  {c['items']:,} items, {c['samples']:,} samples, {c['tokens_used']:,} tokens used"
        + (f", tail {c['tail']:,}" if c["tail"] is not None else "")
    )
    print(
        f"  {c['bytes']:,} bytes in shards, {c['bytes_per_token_byte']:.2f}x the tokens used"
        f" ({c['token_bytes']:,} bytes as {ds.dtype})"
        + (", lean: read them with ul2.shards" if p.lean else "")
    )
    print(f"  this run {state['tokens']:,} tokens in {this['seconds']:.1f} s:")
    for line in phase_lines(this["phases"], this["seconds"]):
        print(f"    {line}")


def phase_lines(phases: dict[str, dict[str, Any]], seconds: float) -> list[str]:
    """One line per phase of a run (``manifest["runs"]``): its seconds, share and rates."""
    lines = []
    for name, phase in phases.items():
        rates = []
        if "tokens_per_s" in phase:
            rates.append(f"{phase['tokens_per_s'] / 1e6:.2f} M tokens/s")
        if "bytes_per_s" in phase:
            rates.append(f"{phase['bytes_per_s'] / 1e6:.1f} MB/s")
        share = phase["seconds"] / max(seconds, 1e-9)
        lines.append(
            f"{name:<9}{phase['seconds']:7.2f} s {share:4.0%}" + (f"  {', '.join(rates)}" if rates else "")
        )
    return lines
