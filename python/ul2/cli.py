"""The ``ul2`` command line (also ``python -m ul2``): demo, preview, plan, stats, prepare, bench.

Needs the ``cli`` extra (click and rich); matplotlib (``plot`` extra) for the PNGs,
``tokenizers``/``sentencepiece`` for those tokenizers, pyarrow for Parquet. All of them are
imported here, inside functions, never by ``import ul2``.

Every error a user can cause (a missing file, a bad tokenizer, too few sentinels) is one line on
stderr and exit status 1; a bad option value (out of range, a budget that cannot fit, options
that contradict each other) is exit status 2, found before any work. ``UL2_DEBUG=1`` shows the
traceback of an unexpected error.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import presets
from ._ul2 import SentinelOverflowError, Sentinels, __version__, span_counts
from .collate import Collator
from .dataset import DenoisingDataset
from .denoisers import Mixture, SpanCorruption
from .plan import Plan, plan

PRESETS: dict[str, Callable[..., Mixture]] = {
    "t5": lambda prompts=None: presets.t5(),
    "ul2": presets.ul2,
    "ul2_paper": presets.ul2_paper,
    "ul2r": presets.ul2r,
}
FORMATS = ("hf", "seqio", "decoder", "seqio_decoder")


class CLIError(Exception):
    """A user error: printed as one line, exit status ``code`` (1)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def bad_option(option: str, message: str) -> CLIError:
    """A bad option value, in click's words and with its exit status (2)."""
    return CLIError(f"Invalid value for '{option}': {message}", 2)


# --- Shared set-up ----------------------------------------------------------------------------


@dataclass
class Options:
    preset: str = "ul2"
    inputs_length: int | None = None
    targets_length: int | None = None
    sequence_length: int | None = None
    format: str | None = None
    tokenizer: str = "byt5"
    extra_ids: int | None = None
    seed: int = 0
    on_overflow: str | None = None  # cap, and say so
    prompts: bool = True


@dataclass
class Setup:
    options: Options
    tokenizer: Any
    mixture: Mixture
    sentinels: Sentinels
    budget: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what the CLI does of its own accord, for stderr

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_id  # type: ignore[no-any-return]

    @property
    def budget_option(self) -> str:
        return "--sequence-length" if self.budget.get("sequence_length") is not None else "--inputs-length"

    def plan(self) -> Plan:
        try:
            return plan(self.mixture, sentinels=self.sentinels, eos=self.eos_id is not None, **self.budget)
        except SentinelOverflowError as e:
            # The core's advice is for Python callers: keep the facts, give the options.
            facts = str(e).split("; give ")[0]
            raise CLIError(
                f"{facts}; on the command line: --on-overflow cap (or t5), a shorter {self.budget_option}, "
                "or a tokenizer with more sentinels (--tokenizer, --extra-ids)"
            ) from None
        except ValueError as e:
            m = re.search(r"\b(inputs|targets|sequence)_length=(\d+): ", str(e))
            if m is None:
                raise
            where = str(e)[: m.start()]
            raise bad_option(f"--{m.group(1)}-length", f"{m.group(2)}: {where}{str(e)[m.end() :]}") from None

    def dataset(self, tokens: Any, *, format: str | None = None, **kwargs: Any) -> DenoisingDataset:
        self.plan()  # names the denoiser that cannot be planned
        return DenoisingDataset(
            tokens,
            self.mixture,
            sentinels=self.sentinels,
            format=format or self.options.format,
            seed=self.options.seed,
            eos_id=self.eos_id,
            pad_id=self.tokenizer.pad_id,
            **self.budget,
            **kwargs,
        )

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"preset": o.preset, "prompts": o.prompts, "tokenizer": self.tokenizer.describe()}


def setup(o: Options) -> Setup:
    """Tokenizer, mixture, sentinels and budget of the options, planned: every option is checked
    here, before any work. With the default ``on_overflow`` (None) a plan that needs more
    sentinels than the tokenizer has is capped, and ``note`` says so."""
    from .tokenizers import load_tokenizer

    if o.preset not in PRESETS:
        raise bad_option("--preset", f"{o.preset!r} is not one of {', '.join(PRESETS)}")
    if o.sequence_length is not None:
        if o.inputs_length is not None or o.targets_length is not None:
            raise bad_option(
                "--sequence-length",
                "give --inputs-length/--targets-length (encoder-decoder) or --sequence-length "
                "(decoder-only), not both",
            )
        budget: dict[str, int | None] = {"sequence_length": o.sequence_length}
        if o.format in ("hf", "seqio"):
            raise bad_option(
                "--format",
                f"{o.format} is an encoder-decoder format; with --sequence-length use decoder or "
                "seqio_decoder",
            )
    else:
        if o.format in ("decoder", "seqio_decoder"):
            raise bad_option("--format", f"{o.format} is a decoder-only format; give --sequence-length")
        budget = {
            "inputs_length": 512 if o.inputs_length is None else o.inputs_length,
            "targets_length": o.targets_length,
        }
    tok = load_tokenizer(o.tokenizer, extra_ids=o.extra_ids)
    mixture = PRESETS[o.preset](prompts=tok.encode if o.prompts else None)
    s = Setup(o, tok, mixture, tok.sentinels(on_overflow=o.on_overflow or "error"), budget)
    if o.on_overflow is None:
        try:
            s.plan()
        except CLIError as e:
            if e.code != 1:
                raise
            s.sentinels = tok.sentinels(on_overflow="cap")
    s.plan()
    if o.on_overflow != "error" and (note := _cap_note(s, always=o.on_overflow is None)):
        s.notes.append(note)
    if tok.eos_id is None:
        s.notes.append(
            f"ul2: warning: the tokenizer {o.tokenizer} has no EOS token (no </s>): inputs and targets "
            "end without one"
        )
    return s


FAR = 1.25  # a capped mean span this many times the requested one is worth a warning


def _cap_note(s: Setup, *, always: bool) -> str | None:
    """One line on what capping does to each SpanCorruption that has more spans than sentinels:
    always (the default policy), else only when the mean span moves far."""
    moved = []
    for r in s.plan():
        d = r.denoiser
        if not isinstance(d, SpanCorruption) or d.num_spans is not None:
            continue
        noise, wanted = span_counts(r.raw_length, d.noise_density, d.mean_span_length)
        if wanted > r.spans:
            moved.append((d.label.split(" +")[0], wanted, d.mean_span_length, noise / r.spans))
    far = any(new > FAR * mu for _, _, mu, new in moved)
    if not moved or not (always or far):
        return None
    n = len(s.sentinels)
    what = ", ".join(
        f"{label} needs {wanted} spans (mean span {mu:g} → {new:.2f})" for label, wanted, mu, new in moved
    )
    head = (
        f"capping at {n} spans: {s.tokenizer.name} has {n} sentinels and at {_budget_text(s.budget)} {what}"
    )
    if far:
        return (
            f"ul2: warning: {head}; a shorter {s.budget_option} or a tokenizer with more sentinels "
            "(--tokenizer, --extra-ids) keeps the mean span"
        )
    return f"ul2: note: {head}; --on-overflow error refuses, t5 counts into the vocabulary"


def say(s: Setup) -> None:
    """The setup's notes, a line each on stderr: once the inputs are read, so that an error in
    them is the only line."""
    for note in s.notes:
        print(note, file=sys.stderr)


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else int(os.environ.get("COLUMNS", 150))
    return Console(file=stream, highlight=False, width=width, soft_wrap=False)


def _budget_text(budget: dict[str, int | None]) -> str:
    if budget.get("sequence_length") is not None:
        return f"sequence {budget['sequence_length']}"
    t = budget.get("targets_length")
    return f"inputs {budget['inputs_length']} / targets {t if t is not None else '(plan max)'}"


# --- Rendering --------------------------------------------------------------------------------

STYLE = {
    "prompt": "bold magenta",
    "sentinel": "bold black on yellow",
    "eos": "dim",
    "noise": "green",
    "text": "",
}


def _visible(text: str) -> str:
    return text.replace("\r", "").replace("\n", "⏎").replace("\t", "→")


def render_ids(tok: Any, ids: Any, *, prompt: int = 0, role: str = "inputs", width: int = 320) -> Any:
    """Token ids as rich Text: the prompt, sentinels and EOS styled; in targets the span text."""
    from rich.text import Text

    from .tokenizers import pieces

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


def stats_table(st: Any, title: str | None = None) -> Any:
    from rich.markup import escape
    from rich.table import Table

    from .stats import LAWS, format_pvalue

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
    from .testing import rows

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


def _view_format(s: Setup) -> str:
    return "decoder" if s.budget.get("sequence_length") is not None else "hf"


# --- Corpus -------------------------------------------------------------------------------------


def load(s: Setup, inputs: Sequence[str], field: str) -> Any:
    from .sources import load_corpus

    try:
        corpus = load_corpus(list(inputs), s.tokenizer, field=field)
    except FileNotFoundError as e:
        raise CLIError(str(e).strip("'\"")) from None
    if corpus.documents == 0:
        raise CLIError(f"{', '.join(inputs) or 'the built-in corpus'}: no text (every document is empty)")
    return corpus


def _corpus_line(corpus: Any) -> str:
    src = corpus.sources[0] if corpus.sources else {}
    where = (
        f"built-in corpus ({src['files']} Python stdlib files)"
        if "builtin" in src
        else f"{len(corpus.sources)} file(s)"
    )
    return f"{where}: {corpus.documents} documents, {len(corpus.tokens):,} tokens"


# --- Commands -----------------------------------------------------------------------------------


def cmd_plan(o: Options, as_json: bool) -> None:
    s = setup(o)
    say(s)
    table = s.plan()
    if as_json:
        rates = np.array(s.mixture.rates) / sum(s.mixture.rates)
        print(
            json.dumps(
                [
                    {
                        "denoiser": r.denoiser.label,
                        "rate": float(rates[i]),
                        "raw_length": r.raw_length,
                        "inputs_length": r.inputs_length,
                        "targets_length": r.targets_length,
                        "spans": r.spans,
                        "sentinels": r.sentinels,
                    }
                    for i, r in enumerate(table)
                ],
                indent=1,
            )
        )
        return
    con = _console()
    con.print(
        plan_table(
            table,
            s.mixture,
            title=f"presets.{o.preset}() at {_budget_text(s.budget)}, "
            f"tokenizer {s.tokenizer.name} ({len(s.sentinels)} sentinels)",
        )
    )
    rates = np.array(s.mixture.rates) / sum(s.mixture.rates)
    mean_raw = float(sum(rates[i] * r.raw_length for i, r in enumerate(table)))
    con.print(
        f"mean raw tokens per example: {mean_raw:.1f}  (inputs and targets include prompt and EOS; "
        "PrefixLM lengths are maxima)"
    )


def cmd_preview(o: Options, inputs: Sequence[str], field: str, count: int | None, width: int | None) -> None:
    from .prepare import corpus_too_small

    s = setup(o)
    con = _console()
    corpus = load(s, inputs, field)
    say(s)
    ds = s.dataset(corpus.tokens, doc_offsets=corpus.doc_offsets, separator_id=s.eos_id)
    view = s.dataset(
        corpus.tokens, doc_offsets=corpus.doc_offsets, separator_id=s.eos_id, format=_view_format(s)
    )
    con.print(
        f"[bold]ul2 preview[/] — {_corpus_line(corpus)}; presets.{o.preset}() at {_budget_text(s.budget)}, "
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


def cmd_stats(
    o: Options,
    inputs: Sequence[str],
    field: str,
    samples: int,
    synthetic: bool,
    as_json: bool,
    png: str | None,
    check: bool,
) -> int:
    from . import stats
    from .prepare import corpus_too_small

    s = setup(o)
    s.plan()
    tokens, source = None, None
    if not synthetic:
        corpus = load(s, inputs, field)
        tokens, source = corpus.stream(s.eos_id), _corpus_line(corpus)
        ds = s.dataset(tokens)
        if ds.num_samples == 0:
            raise corpus_too_small(ds)
    say(s)
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
        con = _console()
        con.print(
            stats_table(
                st,
                title=f"presets.{o.preset}() at {_budget_text(s.budget)}: {st.samples} examples "
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


def _best(fn: Callable[[], object], repeats: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def cmd_prepare(
    o: Options,
    inputs: Sequence[str],
    out: str,
    field: str,
    shard_size: int,
    output_format: str,
    documents: str,
    separator: bool,
    pack: bool,
    max_items: int | None,
    max_shards: int | None,
    engine: str,
    overwrite: bool,
    quiet: bool,
) -> int:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .prepare import check_folder, prepare

    check_folder(Path(out), [Path(i).resolve() for i in inputs], overwrite)
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise CLIError(
                "--engine ray needs Ray, which is not installed (pip install 'ul2[ray]'); use --engine local"
            ) from None
    s = setup(o)
    err = _console(stderr=True)
    t0 = time.perf_counter()
    corpus = load(s, inputs, field)
    say(s)
    sep = s.eos_id if (separator and documents == "concat") else None
    ds = s.dataset(
        corpus.tokens, doc_offsets=corpus.doc_offsets, documents=documents, separator_id=sep, pack=pack
    )
    if not quiet:
        err.print(
            f"[bold]ul2 prepare[/] — {_corpus_line(corpus)} (tokenized in {time.perf_counter() - t0:.1f} s)\n"
            f"  presets.{o.preset}() at {_budget_text(s.budget)}, format {ds.format!r}: "
            f"{len(ds):,} {'packed rows' if pack else 'examples'}"
        )
    job = {
        **s.describe(),
        "inputs": corpus.sources,
        "field": field,
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
        disable=quiet,
        transient=False,
    )
    state: dict[str, Any] = {"task": None, "tokens": 0, "start": time.perf_counter(), "resumed": 0}

    def on_start(manifest: dict[str, Any]) -> None:
        progress.start()
        state["started"] = True
        state["resumed"] = manifest["counts"]["shards"]
        state["start"] = time.perf_counter()
        state["task"] = progress.add_task(
            "prepare", total=manifest["num_shards"], completed=manifest["counts"]["shards"], rate=""
        )

    def on_shard(entry: dict[str, Any], manifest: dict[str, Any]) -> None:
        state["tokens"] += entry["tokens_used"]
        rate = state["tokens"] / max(time.perf_counter() - state["start"], 1e-9)
        progress.update(state["task"], advance=1, rate=f"{rate / 1e6:.2f} M tokens/s")

    try:
        manifest = prepare(
            ds,
            out,
            shard_size=shard_size,
            output_format=output_format,
            job=job,
            max_items=max_items,
            max_shards=max_shards,
            engine=engine,
            overwrite=overwrite,
            progress=on_shard,
            on_start=on_start,
        )
    except KeyboardInterrupt:
        raise CLIError(
            f"interrupted; the finished shards are recorded in {out}/manifest.json: run the same "
            "command again to resume",
            130,
        ) from None
    finally:
        if state.get("started"):
            progress.stop()
    elapsed = time.perf_counter() - state["start"]
    c = manifest["counts"]
    rate = state["tokens"] / max(elapsed, 1e-9)
    resumed = f", {state['resumed']} were already there" if state["resumed"] else ""
    status = (
        "complete"
        if manifest["complete"]
        else f"stopped after --max-shards {max_shards}; run again to continue"
    )
    print(f"{out}: {c['shards']}/{manifest['num_shards']} shards ({status}{resumed})")
    print(
        f"  {c['items']:,} items, {c['samples']:,} samples, {c['tokens_used']:,} tokens used"
        + (f", tail {c['tail']:,}" if c["tail"] is not None else "")
    )
    print(f"  this run {state['tokens']:,} tokens in {elapsed:.1f} s = {rate / 1e6:.2f} M tokens/s")
    return 0


def cmd_bench(quick: bool, builtin: bool, out: str | None) -> int:
    report = Path(__file__).resolve().parents[2] / "benches" / "report.py"
    con = _console()
    if report.is_file() and not builtin:
        con.print(f"[bold]ul2 bench[/]: running the benchmark suite's table, {report}")
        args = (
            [sys.executable, str(report)] + (["--quick"] if quick else []) + (["--out", out] if out else [])
        )
        sys.stdout.flush()
        return subprocess.run(args, check=False).returncode
    from rich.table import Table

    from . import get_num_threads, set_num_threads

    why = "--builtin" if builtin else "benches/report.py is not in this installation"
    con.print(
        f"[bold]ul2 bench[/]: built-in measurement ({why}); synthetic int32 tokens, best of "
        f"{3 if quick else 10} calls after a warm-up"
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
                best = _best(fn, 3 if quick else 10)
            finally:
                set_num_threads(None)
            t.add_row(name, str(n), "256", f"{tokens / best / 1e6:.1f}", f"{best * 1e3:.3f}")
    con.print(t)
    return 0


# --- click wiring -------------------------------------------------------------------------------


def build() -> Any:
    """The click group (click is imported here)."""
    import click

    length = click.IntRange(min=1)
    seed = click.option(
        "--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="the dataset's seed"
    )

    def png_folder(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        # Found before the work, not when the plot is written at the end.
        if value is not None and not Path(value).resolve().parent.is_dir():
            raise click.BadParameter(f"{value}: the folder {Path(value).parent} does not exist")
        return value

    def common(f: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option(
                "--preset",
                type=click.Choice(list(PRESETS)),
                default="ul2",
                show_default=True,
                help="the mixture of denoisers",
            ),
            click.option("--inputs-length", type=length, help="encoder budget [default: 512]"),
            click.option(
                "--targets-length", type=length, help="decoder budget [default: the plan's maximum]"
            ),
            click.option(
                "--sequence-length", type=length, help="decoder-only budget (instead of inputs/targets)"
            ),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(FORMATS),
                help="output names [default: hf, or decoder with --sequence-length]",
            ),
            click.option(
                "--tokenizer",
                default="byt5",
                show_default=True,
                help="byt5, a tokenizer.json or a SentencePiece .model",
            ),
            click.option(
                "--extra-ids",
                type=click.IntRange(min=1),
                help="SentencePiece: append N sentinels after the vocabulary",
            ),
            seed,
            click.option(
                "--on-overflow",
                type=click.Choice(["error", "cap", "t5"]),
                help="more spans than sentinels: fail, cap the spans, or count into the vocabulary as "
                "T5 does [default: cap, saying so in one line]",
            ),
            click.option(
                "--prompts/--no-prompts",
                default=True,
                show_default=True,
                help="mode prompts ([NLU], [NLG], [S2S]) encoded by the tokenizer",
            ),
        ]
        for opt in reversed(opts):
            f = opt(f)
        return f

    def options(kw: dict[str, Any]) -> Options:
        return Options(
            preset=kw.pop("preset"),
            inputs_length=kw.pop("inputs_length"),
            targets_length=kw.pop("targets_length"),
            sequence_length=kw.pop("sequence_length"),
            format=kw.pop("fmt"),
            tokenizer=kw.pop("tokenizer"),
            extra_ids=kw.pop("extra_ids"),
            seed=kw.pop("seed"),
            on_overflow=kw.pop("on_overflow"),
            prompts=kw.pop("prompts"),
        )

    @click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    @click.version_option(__version__, prog_name="ul2")
    def cli() -> None:
        """UL2 mixture-of-denoisers: see what the denoisers do, plan budgets, check the statistics and
        turn a corpus into training shards. Without input files the corpus is the built-in one (the
        Python standard library's sources, ByT5 byte ids)."""

    @cli.command(short_help="ul2() on the built-in corpus: plan, examples, statistics, plot")
    @click.option("--inputs-length", type=length, default=512, show_default=True, help="encoder budget")
    @seed
    @click.option(
        "--samples", type=length, default=7000, show_default=True, help="examples for the statistics"
    )
    @click.option(
        "--png",
        default="ul2-demo.png",
        show_default=True,
        callback=png_folder,
        help="where to write the plot",
    )
    @click.option("--no-plot", is_flag=True, help="write no PNG")
    def demo(inputs_length: int, seed: int, samples: int, png: str, no_plot: bool) -> None:
        """The ul2() preset on the built-in corpus: plan, one colored example per denoiser, empirical vs
        exact statistics, throughput, and ul2-demo.png (span-length histograms vs the exact law)."""
        from . import demo as _demo

        _demo.run(inputs_length, seed, samples, None if no_plot else png)

    @cli.command("plan", short_help="raw length, inputs, targets and spans per denoiser for a budget")
    @common
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    def plan_cmd(as_json: bool, **kw: Any) -> None:
        """Raw length, inputs, targets, spans and sentinels per denoiser for a preset and budget."""
        cmd_plan(options(kw), as_json)

    @cli.command(short_help="decoded, colored examples of FILE... (default: the built-in corpus)")
    @click.argument("files", nargs=-1)
    @common
    @click.option("--field", default="text", show_default=True, help="JSONL field / Parquet column")
    @click.option("--count", type=length, help="show the first N samples [default: one per denoiser]")
    @click.option("--width", type=length, help="characters shown of inputs and targets [default: two lines]")
    def preview(files: tuple[str, ...], field: str, count: int | None, width: int | None, **kw: Any) -> None:
        """Examples of FILE... (text, JSONL, Parquet; default: the built-in corpus), decoded and colored."""
        cmd_preview(options(kw), files, field, count, width)

    @cli.command("stats", short_help="empirical vs exact statistics, with chi-square p-values")
    @click.argument("files", nargs=-1)
    @common
    @click.option("--field", default="text", show_default=True, help="JSONL field / Parquet column")
    @click.option("--samples", type=length, default=5000, show_default=True, help="examples measured")
    @click.option("--synthetic", is_flag=True, help="uniform random ids instead of a corpus")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    @click.option(
        "--png", callback=png_folder, help="also plot the histograms against the exact laws to this PNG"
    )
    @click.option("--check", is_flag=True, help="exit 1 if a p-value is below 0.001 or a count mismatches")
    def stats_cmd(
        files: tuple[str, ...],
        field: str,
        samples: int,
        synthetic: bool,
        as_json: bool,
        png: str | None,
        check: bool,
        **kw: Any,
    ) -> None:
        """Empirical vs exact statistics (noise density, spans, span-length law, prefix lengths,
        denoiser rates) with chi-square p-values."""
        code = cmd_stats(options(kw), files, field, samples, synthetic, as_json, png, check)
        if code:
            raise SystemExit(code)

    @cli.command(short_help="training shards of INPUT... in OUT, with a manifest; resumable")
    @click.argument("inputs", nargs=-1)
    @click.option(
        "--out",
        required=True,
        type=click.Path(file_okay=False),
        help="output folder (resumed if it holds this job's manifest)",
    )
    @common
    @click.option("--field", default="text", show_default=True, help="JSONL field / Parquet column")
    @click.option("--shard-size", type=length, default=4096, show_default=True, help="items per shard")
    @click.option(
        "--output-format",
        type=click.Choice(["npy", "parquet"]),
        default="npy",
        show_default=True,
        help="one .npy per feature per shard, or one Parquet file per shard",
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
    @click.option("--max-items", type=length, help="write only the first N items")
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
        "--overwrite",
        is_flag=True,
        help="delete the shards and manifest in OUT (nothing else) and start over",
    )
    @click.option("--quiet", "-q", is_flag=True, help="no progress bar")
    def prepare(
        inputs: tuple[str, ...],
        out: str,
        field: str,
        shard_size: int,
        output_format: str,
        documents: str,
        separator: bool,
        pack: bool,
        max_items: int | None,
        max_shards: int | None,
        engine: str,
        overwrite: bool,
        quiet: bool,
        **kw: Any,
    ) -> None:
        """Shards of INPUT... (text, JSONL, Parquet, folders; default: the built-in corpus) in OUT:
        one .npy per feature (or Parquet) per shard, manifest.json, resumable."""
        cmd_prepare(
            options(kw),
            inputs,
            out,
            field,
            shard_size,
            output_format,
            documents,
            separator,
            pack,
            max_items,
            max_shards,
            engine,
            overwrite,
            quiet,
        )

    @cli.command(short_help="throughput: the suite's table, or a built-in measurement")
    @click.option("--quick", is_flag=True, help="fewer repeats")
    @click.option("--builtin", is_flag=True, help="the built-in measurement even in a source tree")
    @click.option("--out", help="benches/report.py's output folder")
    def bench(quick: bool, builtin: bool, out: str | None) -> None:
        """The benchmark suite's table (benches/report.py in a source tree), else a built-in measurement."""
        code = cmd_bench(quick, builtin, out)
        if code:
            raise SystemExit(code)

    return cli


def _fail(message: str, code: int = 1) -> None:
    line = " ".join(str(message).split()) or "failed"
    print(f"ul2: error: {line}", file=sys.stderr)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: errors are one line on stderr and a non-zero exit."""
    try:
        import click
        import rich  # noqa: F401
    except ImportError as e:
        _fail(f"the command line needs click and rich ({e.name} is missing): pip install 'ul2[cli]'")
    cli = build()
    debug = bool(os.environ.get("UL2_DEBUG"))
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    try:
        code = cli.main(args=args, prog_name="ul2", standalone_mode=False)
    except click.exceptions.UsageError as e:
        hint = (
            f" (see ul2 {e.ctx.info_name} --help)" if e.ctx is not None and e.ctx.parent is not None else ""
        )
        _fail(e.format_message() + hint, 2)
    except click.exceptions.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except SystemExit:
        raise
    except CLIError as e:
        _fail(str(e), e.code)
    except (ValueError, TypeError, OSError) as e:
        if debug:
            raise
        _fail(str(e))
    except Exception as e:
        if debug:
            raise
        _fail(f"{type(e).__name__}: {e} (UL2_DEBUG=1 shows the traceback)")
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
