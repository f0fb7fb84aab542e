"""User errors of the command line, and how they end the process."""

from __future__ import annotations

import sys
from typing import NoReturn


class CLIError(Exception):
    """A user error: printed as one line, exit status ``code`` (1)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def bad_option(option: str, message: str) -> CLIError:
    """A bad option value, in click's words and with its exit status (2)."""
    return CLIError(f"Invalid value for '{option}': {message}", 2)


def fail(message: str, code: int = 1) -> NoReturn:
    """End the process with ``message`` as one line on stderr."""
    line = " ".join(str(message).split()) or "failed"
    print(f"ul2: error: {line}", file=sys.stderr)
    sys.exit(code)
