"""From the options every command shares to what it works with: tokenizer, mixture, sentinels
and budget, checked and planned before any work; and the corpus of the input files."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy.typing as npt

from .. import presets
from .._ul2 import SentinelOverflowError, Sentinels, span_counts
from ..dataset import DenoisingDataset
from ..denoisers import Mixture, SpanCorruption
from ..plan import Plan, plan
from ..sources import Corpus, Tokenizer, load_corpus
from .errors import CLIError, bad_option

PRESETS: dict[str, Callable[..., Mixture]] = {
    "t5": lambda prompts=None: presets.t5(),
    "ul2": presets.ul2,
    "ul2_paper": presets.ul2_paper,
    "ul2r": presets.ul2r,
    "ul2r_legacy": presets.ul2r_legacy,
}
FORMATS = ("hf", "seqio", "decoder", "seqio_decoder")
FAR = 1.25  # a capped mean span this many times the requested one is worth a warning


@dataclass
class Options:
    """The options every command but demo and bench takes (``options.mixture_options``
    declares them, one click parameter per field, under the field's name)."""

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
    tokenizer: Tokenizer
    mixture: Mixture
    sentinels: Sentinels
    budget: dict[str, Any]
    notes: list[str] = field(default_factory=list)  # what the CLI does of its own accord, for stderr

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_id

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

    def dataset(self, tokens: npt.ArrayLike, *, format: str | None = None, **kwargs: Any) -> DenoisingDataset:
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

    def say(self) -> None:
        """The notes, a line each on stderr: once the inputs are read, so that an error in them
        is the only line."""
        for note in self.notes:
            print(note, file=sys.stderr)


def setup(o: Options) -> Setup:
    """Tokenizer, mixture, sentinels and budget of the options, planned: every option is checked
    here, before any work. With the default ``on_overflow`` (None) a plan that needs more
    sentinels than the tokenizer has is capped, and ``note`` says so."""
    from ..tokenizers import load_tokenizer

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
    if o.on_overflow != "error" and (note := cap_note(s, always=o.on_overflow is None)):
        s.notes.append(note)
    if tok.eos_id is None:
        s.notes.append(
            f"ul2: warning: the tokenizer {o.tokenizer} has no EOS token (no </s>): inputs and targets "
            "end without one"
        )
    return s


def budget_text(budget: dict[str, int | None]) -> str:
    """The budget as titles and notes name it: ``inputs 512 / targets (plan max)``."""
    if budget.get("sequence_length") is not None:
        return f"sequence {budget['sequence_length']}"
    t = budget.get("targets_length")
    return f"inputs {budget['inputs_length']} / targets {t if t is not None else '(plan max)'}"


def cap_note(s: Setup, *, always: bool) -> str | None:
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
    head = f"capping at {n} spans: {s.tokenizer.name} has {n} sentinels and at {budget_text(s.budget)} {what}"
    if far:
        return (
            f"ul2: warning: {head}; a shorter {s.budget_option} or a tokenizer with more sentinels "
            "(--tokenizer, --extra-ids) keeps the mean span"
        )
    return f"ul2: note: {head}; --on-overflow error refuses, t5 counts into the vocabulary"


def load(s: Setup, inputs: Sequence[str], field: str, workers: int | None = None) -> Corpus:
    """The corpus of ``inputs`` (the built-in one when there are none), tokenized by ``workers``
    threads (default: one per CPU)."""
    try:
        corpus = load_corpus(list(inputs), s.tokenizer, field=field, workers=workers)
    except FileNotFoundError as e:
        raise CLIError(str(e).strip("'\"")) from None
    if corpus.documents == 0:
        raise CLIError(f"{', '.join(inputs) or 'the built-in corpus'}: no text (every document is empty)")
    return corpus


def corpus_line(corpus: Corpus) -> str:
    src = corpus.sources[0] if corpus.sources else {}
    where = (
        f"built-in corpus ({src['files']} Python stdlib files)"
        if "builtin" in src
        else f"{len(corpus.sources)} file(s)"
    )
    return f"{where}: {corpus.documents} documents, {len(corpus.tokens):,} tokens"
