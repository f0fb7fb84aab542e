"""The ``ul2`` group and ``main``, the console-script entry point: click and rich are imported
when a command runs, so that their absence is one line too."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .._ul2 import __version__
from .errors import CLIError, fail, fail_interrupted, interrupted, noting_interrupts


def build() -> Any:
    """The click group of every command (click is imported here)."""
    import click

    from . import bench, demo, plan, prepare, preview, stats

    @click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    @click.version_option(__version__, prog_name="ul2")
    def cli() -> None:
        """UL2 mixture-of-denoisers: see what the denoisers do, plan budgets, check the statistics and
        turn a corpus into training shards. Without input files the corpus is the built-in one (the
        Python standard library's sources, ByT5 byte ids)."""

    for module in (demo, plan, preview, stats, prepare, bench):
        cli.add_command(module.command)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: errors are one line on stderr and a non-zero exit; Ctrl-C, at
    any moment from here on, is "interrupted" and exit status 130 (``prepare`` adds how to resume)."""
    with noting_interrupts():
        _main(argv)


def _main(argv: Sequence[str] | None) -> None:
    debug = bool(os.environ.get("UL2_DEBUG"))
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        args = ["--help"]
    try:
        try:
            import click  # noqa: F401
            import rich  # noqa: F401
        except ImportError as e:
            raise CLIError(
                f"the command line needs click and rich ({e.name} is missing): pip install 'ul2[cli]'"
            ) from None
        code = build().main(args=args, prog_name="ul2", standalone_mode=False)
    except SystemExit:
        raise
    except BaseException as e:
        end(e, debug)
    sys.exit(code if isinstance(code, int) else 0)


def end(e: BaseException, debug: bool) -> NoReturn:
    """End the process for the exception that ended the command: one line and its exit status."""
    if isinstance(e, CLIError) and e.code == 130:  # an interrupted command's own words
        fail_interrupted(str(e))
    # Ctrl-C, whatever became of its KeyboardInterrupt (click makes it Abort; numpy may make it
    # a TypeError), is never reported as an error of the command.
    if interrupted(e):
        fail_interrupted()
    if isinstance(e, CLIError):
        fail(str(e), e.code)
    click = sys.modules.get("click")
    if click is not None:
        if isinstance(e, click.exceptions.UsageError):
            ctx = e.ctx
            hint = f" (see ul2 {ctx.info_name} --help)" if ctx is not None and ctx.parent is not None else ""
            fail(e.format_message() + hint, 2)
        if isinstance(e, click.exceptions.ClickException):
            fail(e.format_message(), e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            # click raises Abort for a KeyboardInterrupt and for an EOFError: only the first is Ctrl-C.
            if not isinstance(e.__cause__, EOFError):
                fail_interrupted()
            e = e.__cause__
    if not isinstance(e, Exception) or debug:
        raise e
    if isinstance(e, (ValueError, TypeError, OSError)):
        fail(str(e))
    fail(f"{type(e).__name__}: {e} (UL2_DEBUG=1 shows the traceback)")
