"""``ul2 plan``: raw length, inputs, targets, spans and sentinels per denoiser for a budget."""

from __future__ import annotations

import json

import click
import numpy as np

from ..prepare import plan_entries
from . import options
from .render import console, plan_table
from .setup import Options, budget_text, setup


@click.command("plan", short_help="raw length, inputs, targets and spans per denoiser for a budget")
@options.mixture_options
@options.as_json
def command(o: Options, as_json: bool) -> None:
    """Raw length, inputs, targets, spans and sentinels per denoiser for a preset and budget."""
    run(o, as_json)


def run(o: Options, as_json: bool) -> None:
    s = setup(o)
    s.say()
    table = s.plan()
    if as_json:
        print(json.dumps(plan_entries(table, s.mixture.rates), indent=1))
        return
    con = console()
    con.print(
        plan_table(
            table,
            s.mixture,
            title=f"presets.{o.preset}() at {budget_text(s.budget)}, "
            f"tokenizer {s.tokenizer.name} ({len(s.sentinels)} sentinels)",
        )
    )
    rates = np.array(s.mixture.rates) / sum(s.mixture.rates)
    mean_raw = float(sum(rates[i] * r.raw_length for i, r in enumerate(table)))
    con.print(
        f"mean raw tokens per example: {mean_raw:.1f}  (inputs and targets include prompt and EOS; "
        "PrefixLM lengths are maxima)"
    )
