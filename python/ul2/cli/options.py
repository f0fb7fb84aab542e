"""Every option of the command line, declared once: click's types check each value before any
work starts. ``mixture_options`` adds the options of ``setup.Options`` and hands the command
one ``Options``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from .setup import FORMATS, PRESETS, Options

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

length = click.IntRange(min=1)


class WritableFile(click.ParamType):  # type: ignore[type-arg,unused-ignore]  # generic from click 8.2 on
    """A file to write in a folder that exists: found before the work, not when the file is
    written at the end."""

    name = "text"  # the metavar help shows (TEXT)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        path = Path(str(value))
        if not path.resolve().parent.is_dir():
            self.fail(f"{value}: the folder {path.parent} does not exist", param, ctx)
        return str(value)


seed = click.option(
    "--seed", type=click.IntRange(0, 2**64 - 1), default=0, show_default=True, help="the dataset's seed"
)
field = click.option("--field", default="text", show_default=True, help="JSONL field / Parquet column")
as_json = click.option("--json", "as_json", is_flag=True, help="print JSON")
files = click.argument("files", nargs=-1)


def png(help: str, default: str | None = None) -> Decorator:
    return click.option(
        "--png", type=WritableFile(), default=default, show_default=default is not None, help=help
    )


MIXTURE_OPTIONS: list[Decorator] = [
    click.option(
        "--preset",
        type=click.Choice(list(PRESETS)),
        default="ul2",
        show_default=True,
        help="the mixture of denoisers",
    ),
    click.option("--inputs-length", type=length, help="encoder budget [default: 512]"),
    click.option("--targets-length", type=length, help="decoder budget [default: the plan's maximum]"),
    click.option("--sequence-length", type=length, help="decoder-only budget (instead of inputs/targets)"),
    click.option(
        "--format",
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
OPTION_NAMES = [f.name for f in fields(Options)]


def mixture_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the ``Options`` options to a command, whose first argument becomes the ``Options``."""

    @functools.wraps(command)
    def with_options(**kw: Any) -> Any:
        return command(Options(**{name: kw.pop(name) for name in OPTION_NAMES}), **kw)

    decorated: Callable[..., Any] = with_options
    for option in reversed(MIXTURE_OPTIONS):
        decorated = option(decorated)
    return decorated
