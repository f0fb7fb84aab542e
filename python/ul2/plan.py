"""Length planning for a mixture: what each denoiser takes and produces for a budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, overload

from . import _ul2
from .denoisers import Denoiser, Mixture, as_mixture


class PlanRow(NamedTuple):
    """One denoiser's plan: raw tokens it consumes, output lengths (prompt and EOS included;
    maxima for the random-length S denoiser), noise spans and sentinels it needs."""

    denoiser: Denoiser
    raw_length: int
    inputs_length: int
    targets_length: int
    spans: int
    sentinels: int


class Plan(Sequence[PlanRow]):
    """Per-denoiser plan rows; ``repr`` is a table."""

    def __init__(self, rows: Sequence[PlanRow]) -> None:
        self._rows = tuple(rows)

    @overload
    def __getitem__(self, i: int) -> PlanRow: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[PlanRow]: ...
    def __getitem__(self, i: int | slice) -> PlanRow | Sequence[PlanRow]:
        return self._rows[i]

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        head = ("denoiser", "raw", "inputs", "targets", "spans", "sentinels")
        body = [
            (
                r.denoiser.label,
                str(r.raw_length),
                str(r.inputs_length),
                str(r.targets_length),
                str(r.spans),
                str(r.sentinels),
            )
            for r in self._rows
        ]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        lines = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in [head, *body]
        ]
        return "\n".join(lines)


def plan(
    mixture: Mixture | Denoiser | Sequence[tuple[Denoiser, float]],
    *,
    sentinels: _ul2.Sentinels,
    inputs_length: int | None = None,
    targets_length: int | None = None,
    sequence_length: int | None = None,
    eos: bool = True,
) -> Plan:
    """For each denoiser, the raw length that fills the budget exactly and what it produces.

    Encoder-decoder budgets are ``inputs_length`` (and optionally ``targets_length``);
    decoder-only is ``sequence_length``. Prompt tokens and EOS are counted, so nothing is ever
    cut; more spans than sentinels raise ``SentinelOverflowError`` naming the fix.
    """
    if not isinstance(eos, bool):
        raise TypeError(f"eos={eos!r}: must be True or False")
    m = as_mixture(mixture)
    rows = []
    budget = dict(inputs_length=inputs_length, targets_length=targets_length, sequence_length=sequence_length)
    for i, d in enumerate(m.denoisers):
        try:
            (r,) = _ul2._plan([{"rate": 1.0, **d.to_dict()}], sentinels, budget, eos)
        except ValueError as e:
            # Same exception type, now saying which denoiser of the mixture cannot be planned.
            raise type(e)(f"mixture[{i}] {d.label}: {e}") from None
        rows.append(PlanRow(d, *r))
    return Plan(rows)
