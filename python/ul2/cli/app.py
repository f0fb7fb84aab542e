"""The ``ul2`` group and ``main``, the console-script entry point: click and rich are imported
when a command runs, so that their absence is one line too."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from .._ul2 import __version__
from .errors import CLIError, fail


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
    """Console-script entry point: errors are one line on stderr and a non-zero exit."""
    try:
        import click
        import rich  # noqa: F401
    except ImportError as e:
        fail(f"the command line needs click and rich ({e.name} is missing): pip install 'ul2[cli]'")
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
        fail(e.format_message() + hint, 2)
    except click.exceptions.ClickException as e:
        fail(e.format_message(), e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        fail("interrupted", 130)
    except SystemExit:
        raise
    except CLIError as e:
        fail(str(e), e.code)
    except (ValueError, TypeError, OSError) as e:
        if debug:
            raise
        fail(str(e))
    except Exception as e:
        if debug:
            raise
        fail(f"{type(e).__name__}: {e} (UL2_DEBUG=1 shows the traceback)")
    sys.exit(code if isinstance(code, int) else 0)
