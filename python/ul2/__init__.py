"""ul2: UL2 mixture-of-denoisers and exact T5 span corruption, with a Rust core.

``import ul2`` needs only NumPy; framework adapters import their framework themselves.
"""

from __future__ import annotations

import os

from . import presets
from ._ul2 import (
    SentinelOverflowError,
    Sentinels,
    __version__,
    _after_fork_in_child,
    apply_mask,
    get_num_threads,
    noise_mask,
    plan_span_corruption,
    prefix_split,
    set_num_threads,
    span_counts,
)
from .collate import Collator
from .dataset import DenoisingDataset
from .denoisers import CausalLM, Denoiser, FillInTheMiddle, Mixture, PrefixLM, SpanCorruption, TextInfilling
from .plan import Plan, PlanRow, plan
from .stream import DenoisingStream

# A forked child (e.g. a DataLoader worker) inherits no threads: drop the parent's pool
# so the child builds its own on first use.
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

__all__ = [
    "CausalLM",
    "Collator",
    "Denoiser",
    "DenoisingDataset",
    "DenoisingStream",
    "FillInTheMiddle",
    "Mixture",
    "Plan",
    "PlanRow",
    "PrefixLM",
    "SentinelOverflowError",
    "Sentinels",
    "SpanCorruption",
    "TextInfilling",
    "__version__",
    "apply_mask",
    "get_num_threads",
    "noise_mask",
    "plan",
    "plan_span_corruption",
    "prefix_split",
    "presets",
    "set_num_threads",
    "span_counts",
]
