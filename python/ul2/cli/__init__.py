"""The ``ul2`` command line (also ``python -m ul2``): demo, preview, plan, stats, prepare, bench.

Needs the ``cli`` extra (click and rich); matplotlib (``plot`` extra) for the PNGs,
``tokenizers``/``sentencepiece`` for those tokenizers, pyarrow for Parquet. None of them is
imported by ``import ul2`` or ``import ul2.cli``: ``main`` checks for click and rich first.

Every error a user can cause (a missing file, a bad tokenizer, too few sentinels) is one line on
stderr and exit status 1; a bad option value (out of range, a budget that cannot fit, options
that contradict each other) is exit status 2, found before any work. ``UL2_DEBUG=1`` shows the
traceback of an unexpected error.

One module per command (``demo``, ``plan``, ``preview``, ``stats``, ``prepare``, ``bench``);
``options`` declares the options, ``setup`` turns them into a tokenizer, mixture, sentinels and
budget, ``render`` draws the tables and examples, ``errors`` holds the user errors, ``app``
the group and ``main``.
"""

from .app import build, main

__all__ = ["build", "main"]
