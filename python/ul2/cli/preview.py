"""``ul2 preview``: decoded, colored examples of the input files (or the built-in corpus)."""

from __future__ import annotations

import click

from ..prepare import corpus_too_small
from . import options
from .render import console, first_of_each, show_example, view_format
from .setup import Options, budget_text, corpus_line, load, setup


@click.command("preview", short_help="decoded, colored examples of FILE... (default: the built-in corpus)")
@options.files
@options.mixture_options
@options.field
@click.option("--count", type=options.length, help="show the first N samples [default: one per denoiser]")
@click.option(
    "--width", type=options.length, help="characters shown of inputs and targets [default: two lines]"
)
def command(o: Options, files: tuple[str, ...], field: str, count: int | None, width: int | None) -> None:
    """Examples of FILE... (text, JSONL, Parquet; default: the built-in corpus), decoded and colored."""
    run(o, files, field, count, width)


def run(o: Options, inputs: tuple[str, ...], field: str, count: int | None, width: int | None) -> None:
    s = setup(o)
    con = console()
    corpus = load(s, inputs, field)
    s.say()
    ds = s.dataset(corpus.tokens, doc_offsets=corpus.doc_offsets, separator_id=s.eos_id)
    view = s.dataset(
        corpus.tokens, doc_offsets=corpus.doc_offsets, separator_id=s.eos_id, format=view_format(s)
    )
    con.print(
        f"[bold]ul2 preview[/] — {corpus_line(corpus)}; presets.{o.preset}() at {budget_text(s.budget)}, "
        f"format {ds.format!r}, seed {o.seed}: {ds.num_samples} samples, tail {ds.tail}"
    )
    if ds.num_samples == 0:
        raise corpus_too_small(ds)
    keys = list(range(min(count, ds.num_samples))) if count else first_of_each(ds)
    for k in keys:
        item = ds[k]
        shapes = ", ".join(
            f"{n}{list(a.shape) if a.ndim else ''}" for n, a in item.items() if n != "denoiser"
        )
        show_example(con, s, view, k, width=width)
        con.print(f"  [dim]{ds.format}: {shapes}[/]")
