"""Property-test your pipeline on top of ul2: Hypothesis strategies and invariant checkers.

Strategies (Hypothesis is imported when one is called)::

    from hypothesis import given
    from ul2 import testing

    @given(testing.setups())
    def test_my_pipeline(setup):
        ds = setup.dataset()                       # a DenoisingDataset over a random stream
        testing.check_accounting(ds)
        testing.check_batch(ds, range(min(8, ds.num_samples)))

- ``span_corruptions()``, ``prefix_lms()``, ``causal_lms()``, ``fill_in_the_middles()``,
  ``text_infillings()``, ``denoisers()``: denoisers with small random parameters and optional
  prompt ids;
- ``mixtures()``: 1-4 denoisers with positive rates;
- ``budgets()``: ``{"inputs_length": ..., "targets_length": ...}`` (encoder-decoder) or
  ``{"sequence_length": ...}`` (decoder-only);
- ``token_streams()``: 1-D int arrays of ordinary ids (below the sentinels, above pad/eos/unk);
- ``setups()``: a plannable ``Setup`` (mixture, budget, sentinels, stream, seed, documents).

Checkers raise ``AssertionError`` with what differs; they need only NumPy:

- ``reconstruct(inputs, targets, sentinel_ids)``: the raw tokens back from a span-corruption
  example (each sentinel of the inputs replaced by its run from the targets);
- ``check_example(raw, inputs, targets, denoiser, sentinels=..., eos_id=...)``: one example
  (prompt, EOS, sentinel order, round trip, exact noise count, prefix bounds);
- ``check_batch(ds, keys)``: every row of ``ds.batch(keys)`` ("hf" or "decoder" format,
  unpacked) against the raw slice it came from, plus the format's padding conventions;
- ``check_accounting(ds)``: samples tile the stream: tokens used + tail == stream length.

Bad inputs: ``BadInputs`` collects calls that must fail, each with the exception type and the
substrings (the argument's name, the value) that ul2's error convention puts in its message::

    BAD = testing.BadInputs()
    BAD.add("noise_density=nan", lambda: ul2.span_counts(100, math.nan), ValueError, "noise_density")

    @pytest.mark.parametrize("case", BAD, ids=str)
    def test_bad_input(case):
        case.check()
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _ul2
from .dataset import DenoisingDataset
from .denoisers import CausalLM, Denoiser, FillInTheMiddle, Mixture, PrefixLM, SpanCorruption, TextInfilling
from .plan import Plan, plan
from .stats import prefix_bounds
from .stats.infilling import noise_tokens as _infill_noise

# --- Bad inputs ------------------------------------------------------------------------------

# Only these may escape a bad input: a PanicException (a BaseException), a RuntimeError from a
# broken invariant, a bare OverflowError or a KeyError is a bug in ul2.
ERRORS = (TypeError, ValueError, IndexError)

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True)
class BadInput:
    """A call that must raise ``exc`` (one of ``ERRORS``) with each of ``needles`` in its message."""

    id: str
    call: Callable[[], object]
    exc: ExceptionTypes
    needles: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.id

    def check(self) -> BaseException:
        """Run the call; raise ``AssertionError`` saying what happened instead."""
        try:
            self.call()
        except BaseException as e:
            if not isinstance(e, ERRORS) or not isinstance(e, self.exc):
                raise AssertionError(f"{self.id}: expected {self.exc}, got {type(e).__name__}: {e}") from e
            missing = [n for n in self.needles if n not in str(e)]
            if missing:
                raise AssertionError(f"{self.id}: {missing} not in message: {str(e)!r}") from e
            return e
        raise AssertionError(f"{self.id}: no error")


class BadInputs(Collection[BadInput]):
    """An ordered set of ``BadInput`` cases; ids are unique (a repeated id is refused at once)."""

    def __init__(self) -> None:
        self._cases: dict[str, BadInput] = {}

    def add(self, id: str, call: Callable[[], object], exc: ExceptionTypes, *needles: str) -> None:
        if id in self._cases:
            raise ValueError(f"id={id!r}: already a case")
        self._cases[id] = BadInput(id, call, exc, needles)

    def __iter__(self) -> Iterator[BadInput]:
        return iter(self._cases.values())

    def __len__(self) -> int:
        return len(self._cases)

    def __contains__(self, case: object) -> bool:
        return isinstance(case, BadInput) and self._cases.get(case.id) == case


# --- Invariant checkers ---------------------------------------------------------------------


def reconstruct(
    inputs: npt.ArrayLike, targets: npt.ArrayLike, sentinel_ids: Iterable[int]
) -> npt.NDArray[Any]:
    """Invert the sentinel layout: ``inputs``/``targets`` without prompt and EOS -> raw tokens.

    Targets are ``[s_0, run_0..., s_1, run_1..., ...]`` (possibly one trailing sentinel with an
    empty run); each ``s_k`` in the inputs is replaced by ``run_k``. With no sentinel in either,
    the example is a prefix/causal LM one and the raw tokens are ``inputs + targets``.
    """
    inp = np.asarray(inputs)
    tgt = np.asarray(targets)
    ids = np.asarray(list(sentinel_ids))
    in_sent = np.isin(inp, ids)
    t_sent = np.isin(tgt, ids)
    if not in_sent.any() and not t_sent.any():
        return np.concatenate([inp, tgt])
    if len(tgt) and not t_sent[0]:
        raise AssertionError(f"targets start with {tgt[0]}, not a sentinel")
    pos = np.flatnonzero(t_sent)
    runs = {int(tgt[p]): tgt[p + 1 : q] for p, q in zip(pos, [*pos[1:], len(tgt)], strict=True)}
    if len(runs) != len(pos):
        raise AssertionError("targets repeat a sentinel")
    out: list[npt.NDArray[Any]] = []
    last = 0
    for p in np.flatnonzero(in_sent):
        out.append(inp[last:p])
        s = int(inp[p])
        if s not in runs:
            raise AssertionError(f"sentinel {s} of the inputs has no run in the targets")
        out.append(runs.pop(s))
        last = int(p) + 1
    out.append(inp[last:])
    leftover = {s: r for s, r in runs.items() if len(r)}
    if leftover:
        raise AssertionError(f"target runs of sentinels {sorted(leftover)} are not in the inputs")
    return np.concatenate(out) if out else inp[:0]


def _strip(
    inputs: npt.NDArray[Any], targets: npt.NDArray[Any], denoiser: Denoiser, eos_id: int | None
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    prompt = np.asarray(denoiser.prefix, dtype=np.int64)
    if len(inputs) < len(prompt) or not np.array_equal(inputs[: len(prompt)], prompt):
        raise AssertionError(
            f"inputs do not start with the prompt {denoiser.prefix}: {inputs[: len(prompt)].tolist()}"
        )
    inputs = inputs[len(prompt) :]
    if eos_id is not None:
        for name, a in (("inputs", inputs), ("targets", targets)):
            if not len(a) or a[-1] != eos_id:
                raise AssertionError(f"{name} do not end with EOS {eos_id}: ...{a[-3:].tolist()}")
        inputs, targets = inputs[:-1], targets[:-1]
    return inputs, targets


def noise_tokens(length: int, denoiser: SpanCorruption) -> int:
    """Exact noise-token count ``N = clamp(round_f32(L r), 1, L-1)`` of a row of ``length``
    (it does not depend on the span length or ``num_spans``)."""
    mu = denoiser.mean_span_length if denoiser.num_spans is None else float(max(length, 1))
    return _ul2.span_counts(length, denoiser.noise_density, mu)[0]


def check_example(
    raw: npt.ArrayLike,
    inputs: npt.ArrayLike,
    targets: npt.ArrayLike,
    denoiser: Denoiser,
    *,
    sentinels: _ul2.Sentinels,
    eos_id: int | None = 1,
    spans: int | None = None,
) -> None:
    """Check one example (unpadded ``inputs``/``targets``) made by ``denoiser`` from ``raw``.

    Span corruption: sentinels in order ``ids[0], ids[1], ...`` in both inputs and targets
    (the targets may hold one more, T5's trailing sentinel), the round trip gives ``raw`` back,
    exactly ``span_counts(len(raw))[0]`` noise tokens, and ``spans`` noise runs when given
    (a random roll may add one). Prefix LM: inputs + targets == raw with the split in T5's
    bounds. Causal LM: no inputs but the prompt, targets == raw. Fill-in-the-middle: see
    ``check_fim_example``. Text infilling: targets == raw, the inputs' clean tokens are raw's in
    order, ``N`` of them masked in at most ``N`` masks.
    """
    raw_a = np.asarray(raw)
    if isinstance(denoiser, FillInTheMiddle):
        check_fim_example(raw_a, inputs, targets, denoiser, eos_id=eos_id)
        return
    inp, tgt = _strip(np.asarray(inputs), np.asarray(targets), denoiser, eos_id)
    ids = np.asarray(sentinels.ids, dtype=np.int64)
    if isinstance(denoiser, SpanCorruption):
        universe = ids
        if sentinels.on_overflow == "t5" and len(ids):
            universe = np.concatenate([ids, ids[-1] - 1 - np.arange(len(raw_a) + 1)])
        s_in = inp[np.isin(inp, universe)]
        s_t = tgt[np.isin(tgt, universe)]
        n = len(s_in)
        if not np.array_equal(s_in, universe[:n]):
            raise AssertionError(f"input sentinels out of order: {s_in[:8].tolist()}")
        if not (np.array_equal(s_t, universe[:n]) or np.array_equal(s_t, universe[: n + 1])):
            raise AssertionError(f"target sentinels {s_t[:8].tolist()} do not match the inputs' {n}")
        back = reconstruct(inp, tgt, universe[: len(s_t)].tolist())
        if not np.array_equal(back, raw_a):
            bad = int(np.argmax(back[: len(raw_a)] != raw_a[: len(back)])) if len(back) else 0
            raise AssertionError(
                f"round trip differs from raw (lengths {len(back)} vs {len(raw_a)}, first at {bad})"
            )
        noise = len(tgt) - len(s_t)
        expected = noise_tokens(len(raw_a), denoiser)
        if noise != expected:
            raise AssertionError(
                f"{noise} noise tokens, exact count is {expected} for raw length {len(raw_a)}"
            )
        if spans is not None and not (n == spans or (denoiser.random_roll and n == spans + 1)):
            raise AssertionError(f"{n} noise spans, planned {spans}")
        if not denoiser.random_roll and noise and len(s_t) != n:
            raise AssertionError("a mask without roll ends with noise: no trailing sentinel expected")
    elif isinstance(denoiser, PrefixLM):
        if not np.array_equal(np.concatenate([inp, tgt]), raw_a):
            raise AssertionError("prefix LM: inputs + targets differ from raw")
        lo, hi = prefix_bounds(len(raw_a), denoiser.suffix_density)
        if not lo <= len(inp) <= hi:
            raise AssertionError(f"prefix LM split {len(inp)} outside [{lo}, {hi}]")
    elif isinstance(denoiser, CausalLM):
        if len(inp) or not np.array_equal(tgt, raw_a):
            raise AssertionError("causal LM: inputs must hold only the prompt and targets all of raw")
    elif isinstance(denoiser, TextInfilling):
        if not np.array_equal(tgt, raw_a):
            raise AssertionError("text infilling: targets must be the raw tokens")
        masks = int((inp == denoiser.mask_id).sum())
        noise = _infill_noise(len(raw_a), denoiser.noise_density)
        if len(inp) - masks != len(raw_a) - noise or masks > noise:
            raise AssertionError(
                f"text infilling: {len(inp) - masks} clean tokens and {masks} masks for a "
                f"{len(raw_a)}-token row with {noise} masked"
            )
        it = iter(raw_a.tolist())
        if not all(t in it for t in inp[inp != denoiser.mask_id].tolist()):
            raise AssertionError(
                "text infilling: the clean tokens of the inputs are not the raw ones in order"
            )
    else:  # pragma: no cover
        raise TypeError(f"denoiser={denoiser!r}: unknown kind")


def fim_pieces(
    inputs: npt.ArrayLike,
    targets: npt.ArrayLike,
    denoiser: FillInTheMiddle,
    *,
    eos_id: int | None = 1,
) -> tuple[int, int, int, bool, str]:
    """``(prefix, middle, suffix, spm_seen, split)`` lengths of a fill-in-the-middle example
    (unpadded, as ``rows`` gives it), read back through its ids (raw tokens must not hold
    them). ``split`` is ``"all"`` (inputs hold only the prompt) or ``"middle"``. ``spm_seen``
    says the row starts ``<pre> <suf>``: SPM, or PSM with an empty prefix (the two read alike).
    Without the middle split, an SPM row's prefix and middle are not told apart: ``prefix`` is
    then -1 and ``middle`` their sum."""
    inp, tgt = np.asarray(inputs), np.asarray(targets)
    p = len(denoiser.prefix)
    if len(inp) < p or not np.array_equal(inp[:p], np.asarray(denoiser.prefix, dtype=inp.dtype)):
        raise AssertionError(f"inputs do not start with the prompt {denoiser.prefix}: {inp[:p].tolist()}")
    if eos_id is not None:
        if not len(tgt) or tgt[-1] != eos_id:
            raise AssertionError(f"targets do not end with EOS {eos_id}: ...{tgt[-3:].tolist()}")
        tgt = tgt[:-1]
    context = inp[p:]
    split = "middle" if len(context) else "all"
    seq = np.concatenate([context, tgt])
    pre, mid, suf = denoiser.prefix_id, denoiser.middle_id, denoiser.suffix_id
    for name, id_ in (("prefix_id", pre), ("middle_id", mid), ("suffix_id", suf)):
        if np.count_nonzero(seq == id_) != 1:
            raise AssertionError(f"{name}={id_} appears {np.count_nonzero(seq == id_)} times, not once")
    if seq[0] != pre:
        raise AssertionError(f"the row starts with {seq[0]}, not prefix_id={pre}")
    i_suf, i_mid = int(np.flatnonzero(seq == suf)[0]), int(np.flatnonzero(seq == mid)[0])
    if not i_suf < i_mid:
        raise AssertionError("suffix_id comes after middle_id")
    spm_seen = i_suf == 1
    suffix = i_mid - i_suf - 1
    after = len(seq) - i_mid - 1  # PSM: the middle; SPM: prefix and middle
    if split == "middle":
        middle = len(tgt)
        if middle > after:
            raise AssertionError(f"targets ({middle}) are longer than what follows middle_id ({after})")
        prefix = (i_suf - 1) + (after - middle)
        if i_suf > 1 and after != middle:
            raise AssertionError("a PSM row has tokens between middle_id and the middle")
        if spm_seen and len(context) != i_mid + 1 + after - middle:
            raise AssertionError("the inputs do not end where the middle starts")
    elif spm_seen:
        prefix, middle = -1, after
    else:
        prefix, middle = i_suf - 1, after
    return prefix, middle, suffix, spm_seen, split


def check_fim_example(
    raw: npt.ArrayLike,
    inputs: npt.ArrayLike,
    targets: npt.ArrayLike,
    denoiser: FillInTheMiddle,
    *,
    eos_id: int | None = 1,
    split: str | None = None,
) -> None:
    """One fill-in-the-middle example against its raw tokens: the prompt first, EOS last on the
    targets only, each id once, PSM ``<pre> P <suf> S <mid> M`` or SPM ``<pre> <suf> S <mid> P M``
    with ``P + M + S == raw``, and the inputs/targets split at the start (``"all"``) or at the
    middle (``"middle"``), as ``split`` says when given."""
    raw_a = np.asarray(raw)
    _, middle, suffix, spm_seen, seen = fim_pieces(inputs, targets, denoiser, eos_id=eos_id)
    if split is not None and seen != split:
        raise AssertionError(f"the row splits at the {seen!r} point, expected {split!r}")
    inp, tgt = np.asarray(inputs)[len(denoiser.prefix) :], np.asarray(targets)
    seq = np.concatenate([inp, tgt[: len(tgt) - (eos_id is not None)]])
    i_suf = int(np.flatnonzero(seq == denoiser.suffix_id)[0])
    i_mid = int(np.flatnonzero(seq == denoiser.middle_id)[0])
    s_part = seq[i_suf + 1 : i_mid]
    if spm_seen:
        back = np.concatenate([seq[i_mid + 1 :], s_part])  # P M, then S
    else:
        back = np.concatenate([seq[1:i_suf], seq[i_mid + 1 :], s_part])  # P, M, S
    if len(s_part) != suffix or not np.array_equal(back, raw_a):
        raise AssertionError(
            f"prefix + middle + suffix differ from raw (lengths {len(back)} vs {len(raw_a)})"
        )
    if middle < 0:  # pragma: no cover - fim_pieces never gives it
        raise AssertionError("negative middle")


def _stream(ds: DenoisingDataset) -> npt.NDArray[Any]:
    tokens = np.asarray(ds.tokens)
    sep: int | None = ds.separator_id
    offsets = ds.doc_offsets
    if sep is None or offsets is None or ds.documents != "concat":
        return tokens
    starts = np.asarray(offsets, dtype=np.int64)
    starts = starts[(starts > 0) & (starts < len(tokens))]
    return np.insert(tokens, starts, sep)


def rows(
    ds: DenoisingDataset, out: dict[str, npt.NDArray[Any]]
) -> list[tuple[npt.NDArray[Any], npt.NDArray[Any]]]:
    """``(inputs, targets)`` of each row of an unpacked "hf" or "decoder" batch, unpadded."""
    result = []
    for i in range(len(out["input_ids"])):
        if ds.format == "hf":
            n_in = int(out["attention_mask"][i].sum())
            n_t = int(out["decoder_attention_mask"][i].sum())
            result.append((out["input_ids"][i, :n_in], out["labels"][i, :n_t]))
        elif ds.format == "decoder":
            p = int(out["prefix_lengths"][i])
            total = int(out["attention_mask"][i].sum())
            result.append((out["input_ids"][i, :p], out["input_ids"][i, p:total]))
        else:
            raise ValueError(f"format={ds.format!r}: check_batch reads 'hf' or 'decoder' batches")
    return result


def _check_padding(ds: DenoisingDataset, out: dict[str, npt.NDArray[Any]]) -> None:
    pad = ds.pad_id
    if ds.format == "hf":
        am, dm = out["attention_mask"], out["decoder_attention_mask"]
        for name, mask in (("attention_mask", am), ("decoder_attention_mask", dm)):
            n = mask.sum(axis=1)
            expect = (np.arange(mask.shape[1])[None, :] < n[:, None]).astype(mask.dtype)
            if not np.array_equal(mask, expect):
                raise AssertionError(f"{name} is not ones then zeros")
        if not np.all(out["input_ids"][am == 0] == pad):
            raise AssertionError("input_ids are not pad_id past the attention mask")
        if not np.all(out["labels"][dm == 0] == -100):
            raise AssertionError("labels are not -100 past the decoder mask")
        labels = np.where(out["labels"] == -100, pad, out["labels"])
        shifted = np.concatenate([np.full((len(labels), 1), pad, labels.dtype), labels[:, :-1]], axis=1)
        if not np.array_equal(out["decoder_input_ids"], shifted):
            raise AssertionError("decoder_input_ids are not the labels shifted right")
    else:
        am = out["attention_mask"]
        p = out["prefix_lengths"]
        pos = np.arange(am.shape[1])[None, :]
        n = am.sum(axis=1)
        if not np.all(out["labels"][(pos < p[:, None]) | (pos >= n[:, None])] == -100):
            raise AssertionError("labels are not -100 outside the targets")
        if not np.all(out["input_ids"][am == 0] == pad):
            raise AssertionError("input_ids are not pad_id past the attention mask")


def check_batch(ds: DenoisingDataset, keys: Iterable[int], *, stream: npt.ArrayLike | None = None) -> None:
    """Check rows ``keys`` of an unpacked "hf"/"decoder" ``ds``: each example against its raw
    slice ``stream[ds.span(k)]`` (``stream`` defaults to the tokens, joined with the separator
    when one is used), its lengths against the budget, and the padding conventions."""
    if ds.pack:
        raise ValueError("check_batch reads unpacked datasets (pack=False)")
    keys = [int(k) for k in keys]
    if not keys:
        return
    full = _stream(ds) if stream is None else np.asarray(stream)
    table: Plan = ds.plan()
    out = ds.batch(keys)
    _check_padding(ds, out)
    for (inp, tgt), k, d in zip(rows(ds, out), keys, out["denoiser"].tolist(), strict=True):
        if d != ds.denoiser(k):
            raise AssertionError(f"example {k}: batch says denoiser {d}, ds.denoiser says {ds.denoiser(k)}")
        lo, hi = ds.span(k)
        raw = full[lo:hi]
        row = table[d]
        if len(raw) > row.raw_length:
            raise AssertionError(f"example {k}: raw {len(raw)} longer than planned {row.raw_length}")
        spans = row.spans if len(raw) == row.raw_length else None
        try:
            if isinstance(row.denoiser, FillInTheMiddle):
                # Encoder-decoder rows target the middle, decoder rows as loss says.
                split = row.denoiser.loss if ds.sequence_length is not None else "middle"
                check_fim_example(raw, inp, tgt, row.denoiser, eos_id=ds.eos_id, split=split)
            else:
                check_example(
                    raw, inp, tgt, row.denoiser, sentinels=ds.sentinels, eos_id=ds.eos_id, spans=spans
                )
        except AssertionError as e:
            raise AssertionError(f"example {k} ({row.denoiser}): {e}") from None
        if ds.sequence_length is None:
            if len(inp) > row.inputs_length or len(tgt) > (ds.targets_length or row.targets_length):
                raise AssertionError(f"example {k}: lengths {len(inp)}/{len(tgt)} exceed the plan")
        elif len(inp) + len(tgt) > ds.sequence_length:
            raise AssertionError(f"example {k}: {len(inp) + len(tgt)} tokens exceed sequence_length")


def check_accounting(ds: DenoisingDataset) -> None:
    """Samples tile the stream in order, and tokens used + tail == stream length."""
    pos = 0
    used = 0
    for k in range(ds.num_samples):
        lo, hi = ds.span(k)
        if lo != pos:
            raise AssertionError(f"sample {k} starts at {lo}, the previous one ended at {pos}")
        if hi <= lo:
            raise AssertionError(f"sample {k} is empty: span ({lo}, {hi})")
        used += hi - lo
        pos = hi
    if used + ds.tail != ds.stream_length:
        raise AssertionError(f"tokens used {used} + tail {ds.tail} != stream length {ds.stream_length}")
    if ds.documents == "respect" and ds.tail != 0:
        raise AssertionError(f"documents='respect' leaves a tail of {ds.tail}")
    if ds.pack:
        covered = [s for r in range(len(ds)) for s in ds.samples(r)]
        if covered != list(range(ds.num_samples)):
            raise AssertionError("packed rows do not hold every sample once, in order")


# --- Hypothesis strategies ------------------------------------------------------------------

_PROMPT_IDS = (3, 60)


def _st() -> Any:
    import hypothesis.strategies as st

    return st


def prompts(max_length: int = 3) -> Any:
    """Prompt token ids: empty or up to ``max_length`` ordinary ids."""
    st = _st()
    return st.lists(st.integers(*_PROMPT_IDS), max_size=max_length).map(tuple)


def span_corruptions(
    *,
    max_mean_span_length: float = 16.0,
    max_noise_density: float = 0.5,
    num_spans: bool = True,
    random_roll: bool = True,
    prompt: bool = True,
) -> Any:
    """``SpanCorruption`` with mean span length in [1, max], noise density in (0, max]."""
    st = _st()
    return st.builds(
        SpanCorruption,
        mean_span_length=st.floats(1.0, max_mean_span_length),
        noise_density=st.floats(0.01, max_noise_density),
        num_spans=st.none() | st.integers(1, 8) if num_spans else st.none(),
        prefix=prompts() if prompt else st.just(()),
        random_roll=st.booleans() if random_roll else st.just(False),
    )


def prefix_lms(*, prompt: bool = True) -> Any:
    st = _st()
    return st.builds(
        PrefixLM, suffix_density=st.floats(0.05, 0.5), prefix=prompts() if prompt else st.just(())
    )


def causal_lms(*, prompt: bool = True) -> Any:
    st = _st()
    return st.builds(CausalLM, prefix=prompts() if prompt else st.just(()))


#: The ``<pre>``, ``<mid>``, ``<suf>`` ids of ``fill_in_the_middles()``: the top three ordinary
#: ids of ``setups()``' default vocabulary (its token streams stay below them).
FIM_IDS = (897, 898, 899)


def fill_in_the_middles(*, prompt: bool = True, ids: tuple[int, int, int] = FIM_IDS) -> Any:
    """``FillInTheMiddle`` with ``ids``, any ``spm_rate`` in [0, 1] (its ends often) and either loss."""
    st = _st()
    return st.builds(
        FillInTheMiddle,
        st.just(ids[0]),
        st.just(ids[1]),
        st.just(ids[2]),
        spm_rate=st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0.0, 1.0),
        loss=st.sampled_from(["all", "middle"]),
        prefix=prompts() if prompt else st.just(()),
    )


def text_infillings(*, mask_id: int = 2, prompt: bool = True) -> Any:
    """``TextInfilling`` with noise density in [0, 1], lambda in (0, 16] and ``mask_id`` (2: below
    the ids ``token_streams`` draw, above pad and EOS)."""
    st = _st()
    return st.builds(
        TextInfilling,
        noise_density=st.floats(0.0, 1.0),
        poisson_lambda=st.floats(0.05, 16.0),
        mask_id=st.just(mask_id),
        prefix=prompts() if prompt else st.just(()),
    )


def denoisers(
    *,
    kinds: Sequence[str] = ("span", "prefix", "causal", "fim", "infilling"),
    prompt: bool = True,
    fim_ids: tuple[int, int, int] = FIM_IDS,
    **span: Any,
) -> Any:
    """Any denoiser of ``kinds`` (``"span"``, ``"prefix"``, ``"causal"``, ``"fim"`` with
    ``fim_ids``, which the token streams must not hold, ``"infilling"``)."""
    st = _st()
    options = {
        "span": span_corruptions(prompt=prompt, **span),
        "prefix": prefix_lms(prompt=prompt),
        "causal": causal_lms(prompt=prompt),
        "fim": fill_in_the_middles(prompt=prompt, ids=fim_ids),
        "infilling": text_infillings(prompt=prompt),
    }
    unknown = set(kinds) - set(options)
    if unknown or not kinds:
        raise ValueError(f"kinds={kinds!r}: choose from {sorted(options)}")
    return st.one_of(*(options[k] for k in kinds))


def mixtures(*, max_denoisers: int = 4, **denoiser_options: Any) -> Any:
    """``Mixture`` of 1..``max_denoisers`` denoisers with rates in [0.1, 10]."""
    st = _st()
    pair = st.tuples(denoisers(**denoiser_options), st.floats(0.1, 10.0))
    return st.lists(pair, min_size=1, max_size=max_denoisers).map(Mixture)


def budgets(*, decoder_only: bool | None = None, min_length: int = 16, max_length: int = 256) -> Any:
    """Budget keyword arguments: ``inputs_length`` (+ ``targets_length`` or not) for an
    encoder-decoder, ``sequence_length`` for decoder-only; ``decoder_only=None`` draws either."""
    st = _st()
    n = st.integers(min_length, max_length)
    enc_dec = st.builds(lambda i, t: {"inputs_length": i, "targets_length": t}, n, st.none() | n)
    dec = st.builds(lambda s: {"sequence_length": s}, n)
    if decoder_only is None:
        return enc_dec | dec
    return dec if decoder_only else enc_dec


def token_streams(
    *,
    min_length: int = 0,
    max_length: int = 4096,
    low: int = 3,
    high: int = 1000,
    dtype: npt.DTypeLike = np.int32,
) -> Any:
    """1-D arrays of ids in ``[low, high)``. The length is drawn by Hypothesis, the contents
    from a drawn NumPy seed (fast for long streams; shrinking reduces length and seed)."""
    st = _st()
    return st.builds(
        lambda n, seed: np.random.default_rng(seed).integers(low, high, size=n).astype(dtype),
        st.integers(min_length, max_length),
        st.integers(0, 2**32 - 1),
    )


@dataclass
class Setup:
    """A mixture, budget and stream that plan: build the dataset with ``dataset()``."""

    mixture: Mixture
    budget: dict[str, Any]
    sentinels: _ul2.Sentinels
    tokens: npt.NDArray[Any]
    doc_offsets: npt.NDArray[np.int64] | None
    documents: str
    seed: int

    def plan(self) -> Plan:
        return plan(self.mixture, sentinels=self.sentinels, **self.budget)

    def dataset(self, **overrides: Any) -> DenoisingDataset:
        args: dict[str, Any] = dict(
            sentinels=self.sentinels,
            doc_offsets=self.doc_offsets,
            documents=self.documents,
            seed=self.seed,
            **self.budget,
        )
        args.update(overrides)
        return DenoisingDataset(self.tokens, self.mixture, **args)


def plannable(mixture: Mixture, budget: dict[str, Any], sentinels: _ul2.Sentinels) -> bool:
    """Whether ``plan`` accepts this mixture and budget (no overflow, every denoiser fits)."""
    try:
        plan(mixture, sentinels=sentinels, **budget)
    except ValueError:
        return False
    return True


def setups(
    *,
    vocab_size: int = 1000,
    sentinel_count: int = 100,
    max_length: int = 256,
    max_stream: int = 4096,
    decoder_only: bool | None = None,
    **mixture_options: Any,
) -> Any:
    """A plannable ``Setup``: mixture, budget, ``Sentinels.t5(vocab_size, sentinel_count)``, a
    token stream of ordinary ids (below the three FIM ids, the top ordinary ones), optional
    document boundaries ("concat" or "respect") and a seed."""
    st = _st()
    sentinels = _ul2.Sentinels.t5(vocab_size, sentinel_count)
    # The top three ordinary ids are the FIM ids; tokens stay below them.
    high = vocab_size - sentinel_count - 3
    mixture_options.setdefault("fim_ids", (high, high + 1, high + 2))

    def build(draw: Any) -> Setup:
        documents = draw(st.sampled_from(["concat", "respect"]))
        options = dict(mixture_options)
        if documents == "respect":
            # Each document's last sample is shorter than planned: keep r < 0.5 and derived
            # span counts so that every short row still has a valid mask.
            options.setdefault("num_spans", False)
            options["max_noise_density"] = min(options.get("max_noise_density", 0.5), 0.49)
        mixture = draw(mixtures(**options))
        budget = draw(budgets(decoder_only=decoder_only, max_length=max_length))
        if not plannable(mixture, budget, sentinels):
            from hypothesis import assume

            assume(False)
        tokens = draw(token_streams(min_length=1, max_length=max_stream, high=high))
        cuts = draw(st.lists(st.integers(1, max(1, len(tokens) - 1)), max_size=5, unique=True))
        offsets = np.array(sorted({0, *[c for c in cuts if c < len(tokens)]}), dtype=np.int64)
        return Setup(mixture, budget, sentinels, tokens, offsets, documents, draw(st.integers(0, 2**32 - 1)))

    return st.composite(build)()
