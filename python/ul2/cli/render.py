"""What the commands print: the rich console, the plan and statistics tables, and decoded,
styled examples (rich is imported inside each function)."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from ..dataset import DenoisingDataset
from ..denoisers import Mixture
from ..plan import Plan
from ..sources import Tokenizer
from ..stats import LAWS, MixtureStats, format_pvalue
from .setup import Setup

STYLE = {
    "prompt": "bold magenta",
    "sentinel": "bold black on yellow",
    "eos": "dim",
    "noise": "green",
    "text": "",
}


def console(stderr: bool = False) -> Any:
    """A rich console on stdout (or stderr): the terminal's width, else ``COLUMNS`` or 150, so
    that a pipe gets whole lines without padding."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", 150))
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def _visible(text: str) -> str:
    return text.replace("\r", "").replace("\n", "⏎").replace("\t", "→")


def render_ids(
    tok: Tokenizer, ids: npt.ArrayLike, *, prompt: int = 0, role: str = "inputs", width: int = 320
) -> Any:
    """Token ids as rich Text: the prompt, sentinels and EOS styled; in targets the span text."""
    from rich.text import Text

    from ..tokenizers import pieces

    ids = np.asarray(ids)
    out = Text()
    if prompt:
        out.append(_visible(tok.decode(ids[:prompt])), STYLE["prompt"])
    for kind, text in pieces(tok, ids[prompt:]):
        style = STYLE["noise"] if (kind == "text" and role == "targets") else STYLE[kind]
        out.append(_visible(text), style)
    if len(out) > width:
        out.truncate(width - 1)
        out.append("…", "dim")
    return out


def plan_table(table: Plan, mixture: Mixture, title: str | None = None) -> Any:
    from rich.table import Table

    rates = np.array(mixture.rates)
    rates = rates / rates.sum()
    t = Table(title=title, title_justify="default", header_style="bold")
    for name, just in (
        ("#", "right"),
        ("denoiser", "left"),
        ("rate", "right"),
        ("raw", "right"),
        ("inputs", "right"),
        ("targets", "right"),
        ("spans", "right"),
        ("sentinels", "right"),
    ):
        t.add_column(name, justify=just)  # type: ignore[arg-type]
    for i, r in enumerate(table):
        t.add_row(
            str(i),
            r.denoiser.label,
            f"{rates[i]:.3f}",
            str(r.raw_length),
            str(r.inputs_length),
            str(r.targets_length),
            str(r.spans),
            str(r.sentinels),
        )
    return t


def stats_table(st: MixtureStats, title: str | None = None) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(
        title=title,
        title_justify="default",
        header_style="bold",
        caption=escape(LAWS),
        caption_justify="default",
    )
    rows = st.rows()
    # Denoiser names share their first letters: cut, they would all read "SpanCorruptio…".
    t.add_column("denoiser", no_wrap=True, min_width=max(len(r.denoiser) for r in rows))
    for name in ("statistic", "empirical", "expected", "p-value"):
        t.add_column(name, justify="right" if name == "p-value" else "left")
    for i, r in enumerate(rows):
        p = format_pvalue(r.pvalue)
        style = (
            "" if r.pvalue is None or math.isnan(r.pvalue) else ("bold red" if r.pvalue < 1e-3 else "green")
        )
        last = i + 1 == len(rows) or rows[i + 1].denoiser != ""
        t.add_row(
            r.denoiser,
            r.statistic,
            r.empirical,
            r.expected,
            f"[{style}]{p}[/]" if style else p,
            end_section=last,
        )
    return t


def first_of_each(ds: DenoisingDataset, limit: int = 100_000) -> list[int]:
    """The first sample of each denoiser (in mixture order), among the first ``limit``."""
    found: dict[int, int] = {}
    for k in range(min(limit, ds.num_samples)):
        found.setdefault(ds.denoiser(k), k)
        if len(found) == len(ds.mixture):
            break
    return [found[d] for d in sorted(found)]


def show_example(
    con: Any, s: Setup, ds_view: DenoisingDataset, k: int, *, width: int | None = None, extra: str = ""
) -> None:
    """One sample: denoiser, raw span, then inputs and targets decoded with styles (``width``
    characters each; default: two lines of the console)."""
    from ..testing import rows

    if width is None:
        width = max(40, 2 * (con.width - 11) - 1)
    out = ds_view.batch([k])
    ((inputs, targets),) = rows(ds_view, out)
    d = int(out["denoiser"][0])
    den = ds_view.mixture.denoisers[d]
    lo, hi = ds_view.span(k)
    con.print(
        f"[bold cyan]● {den.label}[/]  sample {k}, raw [{lo}, {hi}) → inputs {len(inputs)}, "
        f"targets {len(targets)}{extra}"
    )
    con.print("  inputs : ", render_ids(s.tokenizer, inputs, prompt=len(den.prefix), width=width), sep="")
    con.print("  targets: ", render_ids(s.tokenizer, targets, role="targets", width=width), sep="")


def view_format(s: Setup) -> str:
    """The format examples are decoded from: inputs and targets apart, whatever ``--format``."""
    return "decoder" if s.budget.get("sequence_length") is not None else "hf"
