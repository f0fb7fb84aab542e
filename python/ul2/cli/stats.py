"""``ul2 stats``: empirical vs exact statistics of the examples, with chi-square p-values."""

from __future__ import annotations

import json
import sys

import click

from .. import stats
from ..prepare import corpus_too_small
from . import options
from .render import console, stats_table
from .setup import Options, budget_text, corpus_line, load, setup


@click.command("stats", short_help="empirical vs exact statistics, with chi-square p-values")
@options.files
@options.mixture_options
@options.field
@click.option("--samples", type=options.length, default=5000, show_default=True, help="examples measured")
@click.option("--synthetic", is_flag=True, help="uniform random ids instead of a corpus")
@options.as_json
@options.png("also plot the histograms against the exact laws to this PNG")
@click.option("--check", is_flag=True, help="exit 1 if a p-value is below 0.001 or a count mismatches")
def command(
    o: Options,
    files: tuple[str, ...],
    field: str,
    samples: int,
    synthetic: bool,
    as_json: bool,
    png: str | None,
    check: bool,
) -> None:
    """Empirical vs exact statistics (noise density, spans, span-length law, prefix lengths,
    denoiser rates) with chi-square p-values."""
    code = run(o, files, field, samples, synthetic, as_json, png, check)
    if code:
        raise SystemExit(code)


def run(
    o: Options,
    inputs: tuple[str, ...],
    field: str,
    samples: int,
    synthetic: bool,
    as_json: bool,
    png: str | None,
    check: bool,
) -> int:
    s = setup(o)
    s.plan()
    tokens, source = None, None
    if not synthetic:
        corpus = load(s, inputs, field)
        tokens, source = corpus.stream(s.eos_id), corpus_line(corpus)
        ds = s.dataset(tokens)
        if ds.num_samples == 0:
            raise corpus_too_small(ds)
    s.say()
    st = stats.measure(
        s.mixture,
        sentinels=s.sentinels,
        samples=samples,
        seed=o.seed,
        tokens=tokens,
        eos_id=s.eos_id,
        pad_id=s.tokenizer.pad_id,
        source=source,
        **s.budget,
    )
    if as_json:
        print(json.dumps(st.to_dict(), indent=1))
    else:
        con = console()
        con.print(
            stats_table(
                st,
                title=f"presets.{o.preset}() at {budget_text(s.budget)}: {st.samples} examples "
                f"of {st.source}, seed {o.seed}",
            )
        )
    if png:
        if stats.plot(st, png):
            print(f"wrote {png}", file=sys.stderr)
        else:
            print("matplotlib is not installed: no plot (pip install 'ul2[plot]')", file=sys.stderr)
    if check and (st.min_pvalue < 1e-3 or any(d.mismatches for d in st.denoisers)):
        print(f"ul2: check failed: smallest p-value {st.min_pvalue:.2g}", file=sys.stderr)
        return 1
    return 0
