"""Denoisers and mixtures: plain, immutable values that print, compare and round-trip
through a dict or JSON (so a run's manifest records the exact objective)."""

from __future__ import annotations

import json
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, field, fields
from typing import Any, TypeAlias

from . import _ul2


def _prefix(value: Iterable[int] | None) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(
            f"prefix={value!r}: expected a sequence of int token ids (encode prompt strings first)"
        )
    # Python ints, so that NumPy integers print and serialise alike; the core checks each id.
    return tuple(int(t) if isinstance(t, numbers.Integral) and not isinstance(t, bool) else t for t in value)


def _real(value: object, name: str) -> float:
    """``value`` as a float, naming ``name`` when it is not a number or too large for one."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}={value!r}: must be a number")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name}={value!r}: too large for a float") from None


def _prompted(prefix: tuple[int, ...]) -> str:
    return f" +{len(prefix)} prompt" if prefix else ""


class _Denoiser:
    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", _prefix(self.prefix))  # type: ignore[attr-defined]
        # The core reads and checks each field by name (the dataclass fields are the
        # declaration); a denoiser that exists is valid.
        _ul2._validate([{"rate": 1.0, **self.to_dict()}])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)  # type: ignore[call-overload]
        d["prefix"] = list(d["prefix"])
        return {"type": type(self).__name__, **d}


@dataclass(frozen=True)
class SpanCorruption(_Denoiser):
    """T5 span corruption: the R (regular) and X (extreme) denoisers.

    ``noise_density`` of the tokens are replaced, in ``mean_span_length``-long spans on average
    (or exactly ``num_spans`` spans), by sentinels; ``prefix`` is the mode prompt's token ids.
    """

    mean_span_length: float
    noise_density: float
    num_spans: int | None = None
    prefix: tuple[int, ...] = ()
    random_roll: bool = False

    @property
    def label(self) -> str:
        """The name tables and messages show: ``SpanCorruption(3, 0.15)``, ``+N prompt`` when prompted."""
        n = "" if self.num_spans is None else f", n={self.num_spans}"
        name = f"SpanCorruption({self.mean_span_length:g}, {self.noise_density:g}{n})"
        return name + _prompted(self.prefix)


@dataclass(frozen=True)
class PrefixLM(_Denoiser):
    """Prefix LM, the S (sequential) denoiser: inputs are a prefix, targets the rest.

    The split follows T5's ``prefix_lm``: the suffix is ``suffix_density`` of the row on average
    (0.5 as in the released UL2 code, 0.25 as in the paper).
    """

    suffix_density: float = 0.5
    prefix: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The name tables and messages show: ``PrefixLM(0.25)``, ``+N prompt`` when prompted."""
        return f"PrefixLM({self.suffix_density:g})" + _prompted(self.prefix)


@dataclass(frozen=True)
class CausalLM(_Denoiser):
    """Plain next-token prediction: the whole row is the target; inputs hold only the prompt."""

    prefix: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The name tables and messages show: ``CausalLM()``, ``+N prompt`` when prompted."""
        return "CausalLM()" + _prompted(self.prefix)


@dataclass(frozen=True)
class FillInTheMiddle(_Denoiser):
    """Fill-in-the-middle (Bavarian et al. 2022; StarCoder), at the token level.

    Each example's ``n`` raw tokens are cut at ``a <= b``, two independent uniform draws on
    ``{0, ..., n}`` sorted (Megatron-LM's and StarCoder's law, there over characters): prefix
    ``tokens[:a]``, middle ``tokens[a:b]``, suffix ``tokens[b:]``, each possibly empty. With
    probability ``spm_rate`` the row is SPM ``<pre> <suf> suffix <mid> prefix middle`` (the FIM
    paper's variant StarCoder trains with), else PSM ``<pre> prefix <suf> suffix <mid> middle``;
    ``prefix_id``, ``middle_id`` and ``suffix_id`` are ``<pre>``, ``<mid>`` and ``<suf>``. The cuts
    and the order are keyed draws of ``(seed, epoch, k)`` like every other draw.

    Decoder-only rows hold ``prompt + rearranged row + EOS`` (EOS after the middle only);
    ``loss="all"`` labels the whole rearranged row, ``loss="middle"`` only the middle (the
    context is then the row's prefix: ``prefix_lengths`` covers it, so a prefix-LM mask sees it
    bidirectionally; a causal model ignores ``prefix_lengths``). Encoder-decoder rows always
    train on the middle: inputs ``prompt + context`` (prefix and suffix with their ids, PSM
    ``<pre> prefix <suf> suffix <mid>``, SPM ``<pre> <suf> suffix <mid> prefix``), targets
    ``middle + EOS``. Either way a row is ``3 + n`` tokens besides prompt and EOS, so the planner
    fills the budget exactly. The FIM rate is this denoiser's rate in a ``Mixture``.
    The ids must differ from each other and from the sentinels; input tokens equal to them are
    not checked (tokenizers keep their special ids out of text).
    """

    prefix_id: int
    middle_id: int
    suffix_id: int
    _: KW_ONLY
    spm_rate: float = 0.5
    loss: str = "all"
    prefix: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The name tables and messages show: ``FIM(spm=0.5)``, with ``loss=middle`` and
        ``+N prompt`` when set."""
        loss = "" if self.loss == "all" else f", loss={self.loss}"
        return f"FIM(spm={self.spm_rate:g}{loss})" + _prompted(self.prefix)


@dataclass(frozen=True)
class TextInfilling(_Denoiser):
    """BART's text infilling (fairseq's ``--mask-length span-poisson --replace-length 1``).

    ``N = ceil(L * noise_density)`` of a row's ``L`` tokens (float32 product, as fairseq) are
    masked in spans whose lengths are drawn from Poisson(``poisson_lambda``) until they reach
    ``N`` (the last one cut to fit; at most ``N`` spans); each span is replaced by one
    ``mask_id``, a length-0 span inserting one. Spans never overlap: the clean tokens between
    them are a uniformly random weak composition. Targets are the row's tokens. ``mask_id`` is
    keyword-only (it has no default and follows the defaulted rates); ``prefix`` is the mode
    prompt's token ids. The laws are in ``ul2.stats.infilling``.
    """

    noise_density: float = 0.3
    poisson_lambda: float = 3.5
    _: KW_ONLY
    mask_id: int
    prefix: tuple[int, ...] = ()

    @property
    def label(self) -> str:
        """The name tables and messages show: ``TextInfilling(0.3, 3.5)``, ``+N prompt`` when prompted."""
        return f"TextInfilling({self.noise_density:g}, {self.poisson_lambda:g})" + _prompted(self.prefix)


Denoiser: TypeAlias = SpanCorruption | PrefixLM | CausalLM | FillInTheMiddle | TextInfilling
_KINDS: dict[str, type[_Denoiser]] = {
    c.__name__: c for c in (SpanCorruption, PrefixLM, CausalLM, FillInTheMiddle, TextInfilling)
}


def denoiser_from_dict(d: Mapping[str, Any]) -> Denoiser:
    """Inverse of ``Denoiser.to_dict``."""
    d = dict(d)
    kind = d.pop("type", None)
    if kind not in _KINDS:
        raise ValueError(f"type={kind!r}: unknown denoiser; expected one of {sorted(_KINDS)}")
    cls = _KINDS[kind]
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{kind}: unknown fields {sorted(unknown)}")
    return cls(**d)  # type: ignore[return-value]


@dataclass(frozen=True)
class Mixture:
    """Denoisers with sampling rates (unnormalised): each example draws one denoiser with
    probability ``rate / sum(rates)`` from its own key."""

    entries: tuple[tuple[Denoiser, float], ...] = field(default=())

    def __init__(self, entries: Iterable[tuple[Denoiser, float]]) -> None:
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Iterable):
            raise TypeError(f"mixture={entries!r}: expected a list of (denoiser, rate) pairs")
        items = tuple(entries)
        if not items:
            raise ValueError("mixture=[]: must hold at least one (denoiser, rate) pair")
        out: list[tuple[Denoiser, float]] = []
        for i, item in enumerate(items):
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(f"mixture[{i}]={item!r}: expected a (denoiser, rate) pair")
            d, rate = item
            if not isinstance(d, _Denoiser):
                raise TypeError(
                    f"mixture[{i}]: {d!r} is not a denoiser "
                    "(SpanCorruption, PrefixLM, CausalLM, FillInTheMiddle, TextInfilling)"
                )
            out.append((d, _real(rate, f"mixture[{i}] rate")))
        object.__setattr__(self, "entries", tuple(out))
        _ul2._validate(self.to_dict()["denoisers"])

    @property
    def denoisers(self) -> tuple[Denoiser, ...]:
        return tuple(d for d, _ in self.entries)

    @property
    def rates(self) -> tuple[float, ...]:
        return tuple(r for _, r in self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def to_dict(self) -> dict[str, Any]:
        return {"denoisers": [{"rate": r, **d.to_dict()} for d, r in self.entries]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mixture:
        if not isinstance(d, Mapping) or "denoisers" not in d:
            raise ValueError(f"mixture={d!r}: expected a dict with a 'denoisers' list (Mixture.to_dict)")
        entries = []
        for i, item in enumerate(d["denoisers"]):
            item = dict(item)
            if "rate" not in item:
                raise ValueError(f"denoisers[{i}]={item!r}: missing its 'rate'")
            rate = item.pop("rate")
            entries.append((denoiser_from_dict(item), rate))
        return cls(entries)

    @classmethod
    def from_json(cls, s: str) -> Mixture:
        return cls.from_dict(json.loads(s))

    def __repr__(self) -> str:
        inner = ",\n".join(f"    ({d!r}, {r!r})" for d, r in self.entries)
        return f"Mixture([\n{inner},\n])"


def as_mixture(value: Mixture | Denoiser | Sequence[tuple[Denoiser, float]]) -> Mixture:
    """A mixture from a mixture, a single denoiser (rate 1) or a list of pairs."""
    if isinstance(value, Mixture):
        return value
    if isinstance(value, _Denoiser):
        return Mixture([(value, 1.0)])
    if isinstance(value, (list, tuple)):
        return Mixture(value)
    raise TypeError(f"mixture={value!r}: expected a Mixture, a denoiser or a list of (denoiser, rate) pairs")
