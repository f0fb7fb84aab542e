"""``python -m ul2 ...``: the same command line as the ``ul2`` console script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main()
