"""Puts ``benches/`` on ``sys.path`` so the benchmarks can import ``report`` (the shared
workloads) and ``baselines`` under ``--import-mode=importlib``."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHES = str(Path(__file__).resolve().parents[1])
if BENCHES not in sys.path:
    sys.path.insert(0, BENCHES)
