"""``ul2 bench``: a short measurement of this installation's throughput.

An installed package knows nothing of the repository it was built from: the benchmark suite
(criterion, the NumPy baseline's ratios, the 10^9-token memmap) is ``make bench`` in a
checkout, and this command says so.
"""

from __future__ import annotations

from collections.abc import Callable

import click
import numpy as np

from .. import get_num_threads, presets, set_num_threads
from .._ul2 import Sentinels
from ..collate import Collator
from ..dataset import DenoisingDataset
from .render import console
from .timing import best_time

SUITE = "the benchmark suite with the NumPy baseline's ratios is make bench, in a checkout of ul2"


@click.command("bench", short_help="throughput: a short built-in measurement (the suite: make bench)")
@click.option("--quick", is_flag=True, help="fewer repeats")
def command(quick: bool) -> None:
    """A short measurement of this installation's throughput on synthetic tokens; the benchmark
    suite (criterion, the NumPy baseline's ratios) is make bench in a checkout of ul2."""
    run(quick)


def run(quick: bool) -> None:
    from rich.table import Table

    con = console()
    repeats = 3 if quick else 10
    con.print(
        f"[bold]ul2 bench[/]: built-in measurement; synthetic int32 tokens, best of {repeats} calls "
        f"after a warm-up ({SUITE})"
    )
    rng = np.random.default_rng(0)
    t = Table(header_style="bold")
    for name in ("workload", "threads", "batch", "M raw tokens/s", "best ms"):
        t.add_column(name, justify="left" if name == "workload" else "right")
    sent = Sentinels.t5(32228, 128)
    t5 = Collator(presets.t5(), sentinels=sent, inputs_length=512)
    rows = rng.integers(3, 32000, size=(256, 568), dtype=np.int32)
    stream = rng.integers(3, 32000, size=256 * 1100, dtype=np.int32)
    ds = DenoisingDataset(stream, presets.ul2(), sentinels=sent, inputs_length=512)
    keys = np.arange(256)
    raw = sum(ds.span(int(k))[1] - ds.span(int(k))[0] for k in keys)
    work: list[tuple[str, int, Callable[[], object]]] = [
        ("Collator t5 (256 x 568)", rows.size, lambda: t5(rows)),
        ("DenoisingDataset ul2 (256 examples)", raw, lambda: ds.batch(keys)),
    ]
    for name, tokens, fn in work:
        for threads in (1, None):
            set_num_threads(threads)
            try:
                n = get_num_threads()
                best = best_time(fn, repeats)
            finally:
                set_num_threads(None)
            t.add_row(name, str(n), "256", f"{tokens / best / 1e6:.1f}", f"{best * 1e3:.3f}")
    con.print(t)
