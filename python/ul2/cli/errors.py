"""User errors of the command line, and how they end the process."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
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


# Ctrl-C seen since ``noting_interrupts`` began. Some third-party code turns the KeyboardInterrupt
# of a Ctrl-C into another exception (numpy's ``ndarray.tofile`` makes it a TypeError, "expected
# str, bytes or os.PathLike object", when it arrives in its os.PathLike check), so the type of
# the exception that ends a command does not tell whether the user pressed Ctrl-C: this does.
_sigints = 0


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _sigints
    _sigints += 1
    raise KeyboardInterrupt


@contextmanager
def noting_interrupts() -> Iterator[None]:
    """For the duration, Ctrl-C (SIGINT) raises KeyboardInterrupt as Python's own handler does,
    and is counted, for ``interrupted()``. Only where Python's handler is the one in place (not
    where SIGINT is ignored, as in a background job, or handled by the caller); restored after."""
    global _sigints
    _sigints = 0
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def interrupted(error: BaseException | None = None) -> bool:
    """Whether the user pressed Ctrl-C: ``error`` is a KeyboardInterrupt, or a SIGINT arrived
    while ``noting_interrupts`` (whatever exception the code it interrupted made of it)."""
    return _sigints > 0 or isinstance(error, KeyboardInterrupt)


def fail_interrupted(message: str = "interrupted") -> NoReturn:
    """End the process after Ctrl-C: ``message`` and exit status 130."""
    # CPython remembers a KeyboardInterrupt that escaped an exec() or eval() of a string, even
    # once caught (a Ctrl-C while a dataclass or namedtuple is made, at import time), and ends
    # ``python -m`` by SIGINT instead of with the exit status; each exec() of a string forgets it.
    exec("")
    fail(message, 130)
