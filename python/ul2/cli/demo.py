"""``ul2 demo`` (what ``make demo`` runs): the ``ul2()`` preset on the built-in corpus.

Prints the plan, one colored example per denoiser (decoded text with the prompt, sentinels and
target spans highlighted), the empirical-vs-exact statistics table from ``ul2.stats`` and the
throughput, and writes ``ul2-demo.png`` (span-length histograms against the exact law). Needs
the ``cli`` extra (click, rich); matplotlib (``plot`` extra) for the PNG.
"""

from __future__ import annotations

import os
import time

import click
import numpy as np

from .. import presets, stats
from .._ul2 import __version__
from ..collate import Collator
from ..sources import ByteTokenizer, stdlib_files, stdlib_stream
from . import options
from .render import console, first_of_each, plan_table, show_example, stats_table
from .setup import Options, budget_text, setup
from .timing import best_time


@click.command("demo", short_help="ul2() on the built-in corpus: plan, examples, statistics, plot")
@click.option("--inputs-length", type=options.length, default=512, show_default=True, help="encoder budget")
@options.seed
@click.option(
    "--samples", type=options.length, default=7000, show_default=True, help="examples for the statistics"
)
@options.png("where to write the plot", default="ul2-demo.png")
@click.option("--no-plot", is_flag=True, help="write no PNG")
def command(inputs_length: int, seed: int, samples: int, png: str, no_plot: bool) -> None:
    """The ul2() preset on the built-in corpus: plan, one colored example per denoiser, empirical vs
    exact statistics, throughput, and ul2-demo.png (span-length histograms vs the exact law)."""
    run(inputs_length, seed, samples, None if no_plot else png)


def run(
    inputs_length: int = 512, seed: int = 0, samples: int = 7000, png: str | None = "ul2-demo.png"
) -> None:
    """Print the demo to stdout; write the plot to ``png`` (when given and matplotlib is there)."""
    from rich.markup import escape

    con = console()
    t0 = time.perf_counter()
    tok = ByteTokenizer()
    stream = stdlib_stream(tok, max_bytes=16 << 20)
    con.print(
        f"[bold]ul2 demo[/] {__version__} — built-in corpus: {len(stdlib_files())} Python stdlib files, "
        f"{len(stream) / 1e6:.1f} M byte tokens (ByT5 ids, {tok.sentinel_count} sentinels), "
        f"read in {time.perf_counter() - t0:.1f} s\n"
    )

    o = Options(preset="ul2", inputs_length=inputs_length, targets_length=inputs_length, seed=seed)
    s = setup(o)
    con.print(
        plan_table(
            s.plan(),
            s.mixture,
            title=f"Plan: presets.ul2(prompts=tokenizer.encode) at {budget_text(s.budget)}",
        )
    )
    for note in s.notes:
        con.print(f"[dim]{escape(note.removeprefix('ul2: '))}[/]")
    con.print()

    ds = s.dataset(stream, format="hf")
    con.print(
        f"[bold]One example per denoiser[/] (the first sample that draws it from DenoisingDataset, "
        f"seed {seed}); [magenta]prompt[/], [black on yellow]sentinels[/], [green]target spans[/]:"
    )
    for k in first_of_each(ds):
        show_example(con, s, ds, k)
    con.print()

    t1 = time.perf_counter()
    st = stats.measure(
        s.mixture,
        sentinels=s.sentinels,
        inputs_length=inputs_length,
        targets_length=inputs_length,
        samples=samples,
        seed=seed,
        tokens=stream,
        eos_id=tok.eos_id,
        source="the corpus",
    )
    con.print(
        stats_table(
            st,
            title=f"Empirical vs exact ({st.samples} examples of the corpus, "
            f"{time.perf_counter() - t1:.1f} s; chi-square goodness of fit)",
        )
    )
    con.print()

    t5 = Collator(presets.t5(), sentinels=s.sentinels, inputs_length=512)
    rows = stream[: 256 * 568].reshape(256, 568)
    best = best_time(lambda: t5(rows))
    keys = np.arange(256)
    raw = sum(ds.span(int(k))[1] - ds.span(int(k))[0] for k in keys)
    best_ds = best_time(lambda: ds.batch(keys))
    con.print(
        f"[bold]Throughput[/] ({os.cpu_count()} CPUs): Collator presets.t5(), 256 x 568 raw tokens: "
        f"{rows.size / best / 1e6:.0f} M tokens/s ({best * 1e3:.2f} ms per batch); "
        f"DenoisingDataset.batch presets.ul2(), 256 examples: {raw / best_ds / 1e6:.0f} M raw tokens/s "
        f"({best_ds * 1e3:.2f} ms)"
    )
    if png:
        if stats.plot(
            st, png, title="ul2 demo: span lengths and prefix splits vs the exact laws (built-in corpus)"
        ):
            con.print(f"wrote {png} (span-length histograms vs the exact law, per denoiser)")
        else:
            con.print("[dim]matplotlib is not installed: no plot (pip install 'ul2[plot]')[/]")
    con.print(f"[dim]done in {time.perf_counter() - t0:.1f} s[/]")
