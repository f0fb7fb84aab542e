"""Issue 7, part 1: the bad-input matrix beyond ``test_errors.py`` (which covers the primitives,
``Sentinels``, the ``Collator`` and the basic denoiser / mixture / plan checks). Here:
``DenoisingDataset`` (constructor and methods), ``ul2.plan``, the presets and their prompts,
``Mixture`` and its dict/JSON form, the denoiser constructors' remaining edges, decoder-only and
packing ``Collator`` options, and ``set_num_threads``.

Every case must raise ``TypeError`` / ``ValueError`` (``IndexError`` for positions out of range)
whose message names the argument, never a ``PanicException``, an ``OverflowError`` without the
argument's name, a ``KeyError`` or a crash (the whole matrix also runs in a child process). Next
to the rejected inputs, the accepted edge cases are checked to give correct results.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import ul2

VOCAB = 32100
S = ul2.Sentinels.t5(VOCAB)
NO_VOCAB = ul2.Sentinels.from_ids(list(range(1000, 1100)))  # ids bounded only by the dtype
T5 = ul2.presets.t5()
TOKENS = np.arange(2, 20_002, dtype=np.int32)  # ordinary ids: never pad, EOS or a sentinel
PROMPTS = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}


def ds(tokens=None, mixture=None, **kw) -> ul2.DenoisingDataset:
    kw.setdefault("sentinels", S)
    if "sequence_length" not in kw:
        kw.setdefault("inputs_length", 512)
    return ul2.DenoisingDataset(
        TOKENS if tokens is None else tokens, T5 if mixture is None else mixture, **kw
    )


def with_token(value: int, dtype=np.int64, at: int = 100) -> np.ndarray:
    t = TOKENS.astype(dtype)
    t[at] = value
    return t


GOOD = ds()
PACKED = ds(sequence_length=256, pack=True)

# (id, thunk, accepted exception types, substrings the message must contain)
CASES: list[tuple[str, object, type[BaseException] | tuple[type[BaseException], ...], tuple[str, ...]]] = []


def add(id_: str, f, exc, *needles: str) -> None:
    CASES.append((id_, f, exc, needles))


# ---- DenoisingDataset(tokens=...) ------------------------------------------------------------
# (float32/float64 and 2-D tokens are in test_dataset.py)
for dt in [np.float16, np.bool_, object, np.int8, np.int16, np.uint8, np.uint64, np.complex64]:
    add(f"ds-tokens-dtype={np.dtype(dt)}", lambda dt=dt: ds(TOKENS.astype(dt)), TypeError, "tokens", "dtype")
add("ds-tokens-0d-array", lambda: ds(np.array(5, np.int32)), (TypeError, ValueError), "tokens")
add("ds-tokens-numpy-scalar", lambda: ds(np.int32(5)), (TypeError, ValueError), "tokens")
add("ds-tokens-3d", lambda: ds(TOKENS.reshape(2, 2, -1)), ValueError, "tokens")
add("ds-tokens-str", lambda: ds("some text"), TypeError, "tokens")
add("ds-tokens-bytes", lambda: ds(b"\x01\x02"), TypeError, "tokens")
add(
    "ds-tokens-None",
    lambda: ul2.DenoisingDataset(None, T5, sentinels=S, inputs_length=512),
    TypeError,
    "tokens",
)
add("ds-tokens-object", lambda: ds(object()), TypeError, "tokens")
add("ds-tokens-dict", lambda: ds({"input_ids": TOKENS}), TypeError, "tokens")
add("ds-tokens-float-list", lambda: ds([2.0, 3.0, 4.0]), TypeError, "tokens")
add("ds-tokens-int-too-big-list", lambda: ds([2, 3, 2**64]), (TypeError, ValueError), "tokens")
# Token values are checked when examples are made (a memmap is never scanned up front); the
# error must still name the dataset's argument and the value.
add("ds-tokens-negative", lambda: ds(with_token(-5)).batch([0]), ValueError, "tokens", "-5")
add("ds-tokens>=vocab", lambda: ds(with_token(VOCAB + 7)).batch([0]), ValueError, "tokens", str(VOCAB + 7))
add("ds-tokens-collision", lambda: ds(with_token(VOCAB - 2)).batch([0]), ValueError, "tokens", str(VOCAB - 2))
add(
    "ds-tokens>int32-for-int32-output",
    lambda: ds(with_token(2**31), sentinels=NO_VOCAB).batch([0]),
    ValueError,
    "tokens",
    str(2**31),
)
add(
    "ds-tokens-uint32>int32-for-int32-output",
    lambda: ds(with_token(2**32 - 1, np.uint32), sentinels=NO_VOCAB)[0],
    ValueError,
    "tokens",
    str(2**32 - 1),
)

# ---- DenoisingDataset(doc_offsets=, documents=, separator_id=) ---------------------------
# (decreasing / past-the-end / not-from-0 offsets and documents="bogus" are in test_dataset.py)
add("ds-doc_offsets-float", lambda: ds(doc_offsets=[0.0, 5000.0, 20000.0]), TypeError, "doc_offsets")
add("ds-doc_offsets-2d", lambda: ds(doc_offsets=[[0, 20000]]), ValueError, "doc_offsets")
add("ds-doc_offsets-negative", lambda: ds(doc_offsets=[0, -3, 20000]), ValueError, "doc_offsets")
add("ds-doc_offsets-str", lambda: ds(doc_offsets="0,100"), TypeError, "doc_offsets")
add("ds-doc_offsets-only-end", lambda: ds(doc_offsets=[20000]), ValueError, "doc_offsets")
add("ds-documents=int", lambda: ds(documents=1), TypeError, "documents")
add("ds-documents=None", lambda: ds(documents=None), TypeError, "documents")
add("ds-documents=Concat", lambda: ds(documents="Concat"), ValueError, "documents")
add(
    "ds-separator_id=-1", lambda: ds(doc_offsets=[0, 100, 20000], separator_id=-1), ValueError, "separator_id"
)
add(
    "ds-separator_id=float",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id=7.0),
    TypeError,
    "separator_id",
)
add(
    "ds-separator_id=str",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id="7"),
    TypeError,
    "separator_id",
)
add(
    "ds-separator_id=2**64",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id=2**64),
    ValueError,
    "separator_id",
)
add(
    "ds-separator_id-too-big-for-uint16-tokens",
    lambda: ds(TOKENS.astype(np.uint16), doc_offsets=[0, 100, 20000], separator_id=70_000),
    ValueError,
    "separator_id",
)
add(
    "ds-separator_id-respect",
    lambda: ds(doc_offsets=[0, 100, 20000], documents="respect", separator_id=7),
    ValueError,
    "separator_id",
)
# A separator equal to a sentinel id makes every joined sample ambiguous: name it.
add(
    "ds-separator_id-is-a-sentinel",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id=VOCAB - 1).batch([0]),
    ValueError,
    "separator_id",
)

# ---- DenoisingDataset budgets, format and options -------------------------------------------
add("ds-no-budget", lambda: ds(inputs_length=None), ValueError, "inputs_length")
for v in (0, 1, -1):
    add(f"ds-inputs_length={v}", lambda v=v: ds(inputs_length=v), ValueError, "inputs_length")
    add(f"ds-sequence_length={v}", lambda v=v: ds(sequence_length=v), ValueError, "sequence_length")
add("ds-inputs_length=float", lambda: ds(inputs_length=512.0), TypeError, "inputs_length")
add("ds-inputs_length=bool", lambda: ds(inputs_length=True), TypeError, "inputs_length")
add("ds-inputs_length=2**64", lambda: ds(inputs_length=2**64), ValueError, "inputs_length")
add("ds-sequence_length=float", lambda: ds(sequence_length=512.0), TypeError, "sequence_length")
add("ds-sequence_length=str", lambda: ds(sequence_length="512"), TypeError, "sequence_length")
add("ds-targets_length=1", lambda: ds(targets_length=1), ValueError, "targets_length")
add("ds-targets_length=-1", lambda: ds(targets_length=-1), ValueError, "targets_length")
add("ds-both-budgets", lambda: ds(sequence_length=1024, inputs_length=512), ValueError, "sequence_length")
add(
    "ds-targets-with-sequence",
    lambda: ds(sequence_length=1024, inputs_length=None, targets_length=100),
    ValueError,
    "sequence_length",
)
add("ds-format=tf", lambda: ds(format="tf"), ValueError, "format")
add("ds-format=int", lambda: ds(format=1), TypeError, "format")
add("ds-format=hf-with-sequence_length", lambda: ds(sequence_length=512, format="hf"), ValueError, "format")
add("ds-format=decoder-with-inputs_length", lambda: ds(format="decoder"), ValueError, "format")
add("ds-format=seqio_decoder-with-inputs", lambda: ds(format="seqio_decoder"), ValueError, "format")
add("ds-seed=-1", lambda: ds(seed=-1), ValueError, "seed")
add("ds-seed=2**64", lambda: ds(seed=2**64), ValueError, "seed")
add("ds-seed=float", lambda: ds(seed=1.0), TypeError, "seed")
add("ds-seed=None", lambda: ds(seed=None), TypeError, "seed")
add("ds-eos_id=-1", lambda: ds(eos_id=-1), ValueError, "eos_id")
add("ds-eos_id=float", lambda: ds(eos_id=1.0), TypeError, "eos_id")
add("ds-eos_id>int32", lambda: ds(eos_id=2**31), ValueError, "eos_id")
add("ds-pad_id=-1", lambda: ds(pad_id=-1), ValueError, "pad_id")
add("ds-pad_id=None", lambda: ds(pad_id=None), TypeError, "pad_id")
add("ds-pad_id>int32", lambda: ds(pad_id=2**31), ValueError, "pad_id")
add("ds-pack=int", lambda: ds(pack=1), TypeError, "pack")
add("ds-pack=None", lambda: ds(pack=None), TypeError, "pack")
add("ds-bidirectional_mask=str", lambda: ds(bidirectional_mask="yes"), TypeError, "bidirectional_mask")
for dt in [np.float32, np.uint32, np.int16, "bogus"]:
    add(f"ds-dtype={dt}", lambda dt=dt: ds(dtype=dt), TypeError, "dtype")
add("ds-sentinels=None", lambda: ds(sentinels=None), TypeError, "sentinels")
add("ds-sentinels=list", lambda: ds(sentinels=[32099, 32098]), TypeError, "sentinels")
add("ds-sentinels>int32", lambda: ds(sentinels=ul2.Sentinels.t5(2**32)), ValueError, "sentinels")
add("ds-mixture=str", lambda: ds(mixture="ul2"), TypeError, "mixture")
add("ds-mixture=empty", lambda: ds(mixture=[]), ValueError, "mixture")
add(
    "ds-mixture=None",
    lambda: ul2.DenoisingDataset(TOKENS, None, sentinels=S, inputs_length=512),
    TypeError,
    "mixture",
)
add("ds-mixture=int", lambda: ds(mixture=0), TypeError, "mixture")
add(
    "ds-mixture-257-denoisers",  # the index stores a byte per sample
    lambda: ds(mixture=[(ul2.CausalLM(), 1.0)] * 257),
    ValueError,
    "mixture",
)
add(
    "ds-overflow",
    lambda: ds(mixture=ul2.presets.ul2()),
    ul2.SentinelOverflowError,
    "sentinels",
    "100",
)
add(
    "ds-overflow-decoder",
    lambda: ds(mixture=ul2.presets.ul2(), sequence_length=1024),
    ul2.SentinelOverflowError,
    "sentinels",
)
add(
    "ds-prompt-longer-than-budget",
    lambda: ds(mixture=ul2.SpanCorruption(3.0, 0.15, prefix=range(2, 600))),
    ValueError,
    "inputs_length",
)
add(
    "ds-r>.5-small-mu",
    lambda: ds(mixture=ul2.SpanCorruption(1.0, 0.9)),
    ValueError,
    "noise_density",
)

# ---- DenoisingDataset methods ----------------------------------------------------------------
# (out-of-range positions and batch([-1]) are in test_dataset.py)
add("ds[str]", lambda: GOOD["0"], TypeError, "k=")
add("ds[None]", lambda: GOOD[None], TypeError, "k=")
add("ds[float]", lambda: GOOD[1.5], TypeError, "k=")
add("ds[2**70]", lambda: GOOD[2**70], IndexError, "k=")
add("ds.span(float)", lambda: GOOD.span(1.5), TypeError, "k=")
add("ds.span(str)", lambda: GOOD.span("1"), TypeError, "k=")
add("ds.span(2**70)", lambda: GOOD.span(2**70), (IndexError, ValueError), "k=")
add("ds.denoiser(float)", lambda: GOOD.denoiser(0.0), TypeError, "k=")
add("ds.denoiser(-2**70)", lambda: GOOD.denoiser(-(2**70)), (IndexError, ValueError), "k=")
add("ds.samples(float)", lambda: PACKED.samples(1.0), TypeError, "r=")
add("ds.samples(2**70)", lambda: PACKED.samples(2**70), (IndexError, ValueError), "r=")
add("ds.samples(out-of-range)", lambda: PACKED.samples(len(PACKED)), IndexError, "r=")
add("ds.batch(empty)", lambda: GOOD.batch([]), (TypeError, ValueError), "keys")
add("ds.batch(empty-array)", lambda: GOOD.batch(np.array([], np.int64)), ValueError, "keys")
add("ds.batch(2d)", lambda: GOOD.batch([[0, 1]]), ValueError, "keys")
add("ds.batch(0d)", lambda: GOOD.batch(np.array(3)), ValueError, "keys")
add("ds.batch(float)", lambda: GOOD.batch([0.5]), TypeError, "keys")
add("ds.batch(bool)", lambda: GOOD.batch([True, False]), TypeError, "keys")
add("ds.batch(str)", lambda: GOOD.batch("0"), TypeError, "keys")
add("ds.batch(None)", lambda: GOOD.batch(None), TypeError, "keys")
add("ds.batch(int)", lambda: GOOD.batch(3), TypeError, "keys")
add("ds.batch(2**64)", lambda: GOOD.batch([2**64]), (TypeError, ValueError, IndexError), "keys")
add("ds.batch(uint64-huge)", lambda: GOOD.batch(np.array([2**63], np.uint64)), IndexError, "keys")
add("ds.batch(packed-row-out-of-range)", lambda: PACKED.batch([len(PACKED)]), IndexError, "keys")

# ---- ul2.plan ---------------------------------------------------------------------------------
# (no budget, inputs_length 0/1/-1/float, targets_length=1, both budgets, bad sentinels /
# mixture, overflow and a too-long prompt are in test_errors.py)
for v in (0, 1, -1):
    add(
        f"plan-sequence_length={v}",
        lambda v=v: ul2.plan(T5, sentinels=S, sequence_length=v),
        ValueError,
        "sequence_length",
    )
add(
    "plan-sequence_length=float",
    lambda: ul2.plan(T5, sentinels=S, sequence_length=64.0),
    TypeError,
    "sequence_length",
)
add(
    "plan-inputs_length=bool",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=True),
    TypeError,
    "inputs_length",
)
add(
    "plan-inputs_length=2**64",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=2**64),
    ValueError,
    "inputs_length",
)
add(
    "plan-sequence_length-huge",
    lambda: ul2.plan(T5, sentinels=S, sequence_length=2**62),
    ValueError,
    "sequence_length",
)
add(
    "plan-targets_length=float",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512, targets_length=9.0),
    TypeError,
    "targets_length",
)
add(
    "plan-targets_length-only",
    lambda: ul2.plan(T5, sentinels=S, targets_length=100),
    ValueError,
    "inputs_length",
)
add("plan-eos=int", lambda: ul2.plan(T5, sentinels=S, inputs_length=512, eos=1), TypeError, "eos")
add("plan-eos=None", lambda: ul2.plan(T5, sentinels=S, inputs_length=512, eos=None), TypeError, "eos")
add("plan-mixture=None", lambda: ul2.plan(None, sentinels=S, inputs_length=512), TypeError, "mixture")
add(
    "plan-mixture-bad-rate",
    lambda: ul2.plan([(ul2.CausalLM(), -1.0)], sentinels=S, inputs_length=512),
    ValueError,
    "rate",
)
add("plan-sentinels-missing", lambda: ul2.plan(T5, sentinels=None, inputs_length=512), TypeError, "sentinels")
add(
    "plan-prefix_lm-inputs_length=2",
    lambda: ul2.plan(ul2.PrefixLM(), sentinels=S, inputs_length=2),
    ValueError,
    "inputs_length",
)
add(
    "plan-prefix_lm-targets_length=1",
    lambda: ul2.plan(ul2.PrefixLM(), sentinels=S, inputs_length=512, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan-causal-targets_length=1",
    lambda: ul2.plan(ul2.CausalLM(), sentinels=S, inputs_length=512, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan-causal-prompt-too-long",
    lambda: ul2.plan(ul2.CausalLM(prefix=range(2, 20)), sentinels=S, inputs_length=10),
    ValueError,
    "inputs_length",
)
add(
    "plan-decoder-prompt-too-long",
    lambda: ul2.plan(ul2.PrefixLM(prefix=range(2, 40)), sentinels=S, sequence_length=32),
    ValueError,
    "sequence_length",
)
add(
    "plan-decoder-overflow",
    lambda: ul2.plan(ul2.presets.ul2(), sentinels=S, sequence_length=1024),
    ul2.SentinelOverflowError,
    "mixture[",
)
add(
    "plan-num_spans-too-many-for-budget",
    lambda: ul2.plan(
        ul2.SpanCorruption(3.0, 0.15, num_spans=50), sentinels=S, inputs_length=64, targets_length=40
    ),
    ValueError,
    "length",
)

# ---- presets and prompts ---------------------------------------------------------------------
for name in ("ul2", "ul2_paper", "ul2r"):
    preset = getattr(ul2.presets, name)
    add(f"{name}-prompts=int", lambda p=preset: p(prompts=5), TypeError, "prompts")
    add(f"{name}-prompts=list", lambda p=preset: p(prompts=[3, 4, 5]), TypeError, "prompts")
    add(f"{name}-prompts-callable->None", lambda p=preset: p(prompts=lambda s: None), TypeError, "prompts")
    add(f"{name}-prompts-callable->int", lambda p=preset: p(prompts=len), TypeError, "prompts")
    add(f"{name}-prompts-callable->str", lambda p=preset: p(prompts=lambda s: s), TypeError, "prompts")
    add(
        f"{name}-prompts-negative-id",
        lambda p=preset: p(prompts={**PROMPTS, "[S2S]": [-1]}),
        ValueError,
        "prefix",
    )
    add(
        f"{name}-prompts-float-id",
        lambda p=preset: p(prompts={**PROMPTS, "[S2S]": [1.5]}),
        TypeError,
        "prefix",
    )
    add(f"{name}-prompts-missing-mode", lambda p=preset: p(prompts={"[NLU]": [3]}), ValueError, "prompts")
add("t5-prompts", lambda: ul2.presets.t5(prompts=PROMPTS), TypeError, "prompts")

# ---- Mixture, dict / JSON --------------------------------------------------------------------
_D = ul2.SpanCorruption(3.0, 0.15)
add("Mixture(None)", lambda: ul2.Mixture(None), TypeError, "mixture")
add("Mixture(int)", lambda: ul2.Mixture(5), TypeError, "mixture")
add("Mixture-triple", lambda: ul2.Mixture([(_D, 1.0, 2)]), TypeError, "mixture")
add("Mixture-dict", lambda: ul2.Mixture({_D: 1.0}), TypeError, "mixture")
add("Mixture-rate=None", lambda: ul2.Mixture([(_D, None)]), TypeError, "rate")
add("Mixture-rate=10**400", lambda: ul2.Mixture([(_D, 10**400)]), (TypeError, ValueError), "rate")
add("Mixture-rate=np.nan", lambda: ul2.Mixture([(_D, np.float64("nan"))]), ValueError, "rate")
add("Mixture-rate=-0.5-with-good", lambda: ul2.Mixture([(_D, 1.0), (_D, -0.5)]), ValueError, "rate")
add("Mixture.from_dict({})", lambda: ul2.Mixture.from_dict({}), (TypeError, ValueError), "denoisers")
add(
    "Mixture.from_dict-no-rate",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "PrefixLM"}]}),
    (TypeError, ValueError),
    "rate",
)
add(
    "Mixture.from_dict-unknown-type",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "Bogus", "rate": 1.0}]}),
    ValueError,
    "Bogus",
)
add(
    "Mixture.from_dict-unknown-field",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "PrefixLM", "rate": 1.0, "density": 0.5}]}),
    ValueError,
    "density",
)
add(
    "Mixture.from_dict-missing-field",
    lambda: ul2.Mixture.from_dict(
        {"denoisers": [{"type": "SpanCorruption", "rate": 1.0, "mean_span_length": 3}]}
    ),
    TypeError,
    "noise_density",
)
add(
    "Mixture.from_dict-bad-value",
    lambda: ul2.Mixture.from_dict({"denoisers": [{"type": "PrefixLM", "rate": 1.0, "suffix_density": 0.9}]}),
    ValueError,
    "suffix_density",
)
add("Mixture.from_json-not-json", lambda: ul2.Mixture.from_json("{"), ValueError)

# ---- denoiser constructors: the edges test_errors.py leaves out -------------------------------
add(
    "SpanCorruption-num_spans=2**64",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=2**64),
    ValueError,
    "num_spans",
)
add(
    "SpanCorruption-num_spans=bool",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=True),
    TypeError,
    "num_spans",
)
add(
    "SpanCorruption-mean_span_length=bool",
    lambda: ul2.SpanCorruption(True, 0.15),
    TypeError,
    "mean_span_length",
)
add(
    "SpanCorruption-mean_span_length=10**400",
    lambda: ul2.SpanCorruption(10**400, 0.15),
    (TypeError, ValueError),
    "mean_span_length",
)
add(
    "SpanCorruption-noise_density=10**400",
    lambda: ul2.SpanCorruption(3.0, 10**400),
    ValueError,
    "noise_density",
)
add(
    "SpanCorruption-random_roll=None",
    lambda: ul2.SpanCorruption(3.0, 0.15, random_roll=None),
    TypeError,
    "random_roll",
)
add(
    "SpanCorruption-prefix=[2**63]",
    lambda: ul2.SpanCorruption(3.0, 0.15, prefix=[2**63]),
    ValueError,
    "prefix",
)
add(
    "SpanCorruption-prefix-float-array",
    lambda: ul2.SpanCorruption(3.0, 0.15, prefix=np.array([1.5])),
    TypeError,
    "prefix",
)
add("SpanCorruption-prefix-nested", lambda: ul2.SpanCorruption(3.0, 0.15, prefix=[[1]]), TypeError, "prefix")
add("PrefixLM-suffix_density=None", lambda: ul2.PrefixLM(None), TypeError, "suffix_density")
add("PrefixLM-suffix_density=bool", lambda: ul2.PrefixLM(False), TypeError, "suffix_density")
add("PrefixLM-suffix_density=10**400", lambda: ul2.PrefixLM(10**400), ValueError, "suffix_density")
add("PrefixLM-prefix=[2**64]", lambda: ul2.PrefixLM(0.5, prefix=[2**64]), ValueError, "prefix")
add("CausalLM-prefix=int", lambda: ul2.CausalLM(5), TypeError, "prefix")
add("CausalLM-prefix-negative", lambda: ul2.CausalLM(prefix=[1, -2]), ValueError, "prefix")
add("CausalLM-prefix=[2**63]", lambda: ul2.CausalLM(prefix=[2**63]), ValueError, "prefix")
add("CausalLM-prefix-None-item", lambda: ul2.CausalLM(prefix=[None]), TypeError, "prefix")


# ---- Collator: decoder-only, packing and ragged-row edges ----------------------------------------
def collator(**kw) -> ul2.Collator:
    kw.setdefault("sentinels", S)
    if "sequence_length" not in kw:
        kw.setdefault("inputs_length", 512)
    return ul2.Collator(kw.pop("mixture", T5), **kw)


for v in (0, 1, -1):
    add(
        f"Collator-sequence_length={v}",
        lambda v=v: collator(sequence_length=v),
        ValueError,
        "sequence_length",
    )
add("Collator-sequence_length=float", lambda: collator(sequence_length=1.5e3), TypeError, "sequence_length")
add(
    "Collator-both-budgets",
    lambda: collator(inputs_length=512, sequence_length=1024),
    ValueError,
    "sequence_length",
)
add(
    "Collator-format=hf-decoder-budget",
    lambda: collator(sequence_length=512, format="hf"),
    ValueError,
    "format",
)
add("Collator-format=decoder-enc-budget", lambda: collator(format="decoder"), ValueError, "format")
add("Collator-pack=int", lambda: collator(pack=1), TypeError, "pack")
add("Collator-pack=str", lambda: collator(pack="True"), TypeError, "pack")
add(
    "Collator-bidirectional_mask=None",
    lambda: collator(bidirectional_mask=None),
    TypeError,
    "bidirectional_mask",
)
add(
    "Collator-decoder-overflow",
    lambda: collator(mixture=ul2.presets.ul2(), sequence_length=1024),
    ul2.SentinelOverflowError,
    "sentinels",
)
add("call-ragged-None-item", lambda: collator()([TOKENS[:10], None]), TypeError, "rows[1]")
add("call-ragged-float-list", lambda: collator()([[2, 3], [4.5]]), TypeError, "rows[1]")
add("call-ragged-str-item", lambda: collator()(["abc"]), TypeError, "rows[0]")
add("call-keys-2**64", lambda: collator()(TOKENS[None, :100], keys=[2**64]), (TypeError, ValueError), "keys")
add("call-keys-float-array", lambda: collator()(TOKENS[None, :100], keys=np.array([1.0])), TypeError, "keys")
add("call-keys-None-item", lambda: collator()(TOKENS[None, :100], keys=[None]), TypeError, "keys")
add(
    "call-packed-row-too-long",
    lambda: collator(pack=True)([TOKENS[:100], TOKENS[:600]]),
    ValueError,
    "rows[1]",
)
add(
    "call-decoder-row-too-long",
    lambda: collator(sequence_length=256)([TOKENS[:100], TOKENS[:1000]]),
    ValueError,
    "rows[1]",
)
add(
    "call-decoder-packed-collision",
    lambda: collator(sequence_length=256, pack=True)([TOKENS[:10], np.array([7, VOCAB - 1], np.int32)]),
    ValueError,
    "rows[1]",
)
add("call-decoder-empty-batch", lambda: collator(sequence_length=256)([]), ValueError, "rows")
add("call-packed-empty-batch", lambda: collator(pack=True)(np.zeros((0, 10), np.int32)), ValueError, "rows")

# ---- set_num_threads -----------------------------------------------------------------------------
add("set_num_threads-bool", lambda: ul2.set_num_threads(True), TypeError, "num_threads")
add("set_num_threads-str", lambda: ul2.set_num_threads("2"), TypeError, "num_threads")
add("set_num_threads-2**64", lambda: ul2.set_num_threads(2**64), ValueError, "num_threads")

EXPECTED = (TypeError, ValueError, IndexError)


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    ul2.set_num_threads(None)


@pytest.mark.parametrize(("thunk", "exc", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(thunk, exc, needles):
    with pytest.raises(BaseException) as info:
        thunk()
    e = info.value
    # Never a PanicException (a BaseException), a RuntimeError from a broken invariant, a bare
    # OverflowError or KeyError: one of the documented types, naming the argument.
    assert isinstance(e, EXPECTED), f"{type(e).__name__}: {e}"
    assert isinstance(e, exc), f"expected {exc}, got {type(e).__name__}: {e}"
    msg = str(e)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in message: {msg!r}"


def test_case_ids_are_unique_and_new():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 200


# ---------------------------------------------------------------------------------------------
# The whole matrix in a child: no input aborts the process or leaks a PanicException
# ---------------------------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("ul2_bad_inputs", {path!r})
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bad = []
    for name, thunk, exc, needles in mod.CASES:
        try:
            thunk()
        except (TypeError, ValueError, IndexError):
            pass
        except BaseException as e:  # PanicException, OverflowError, KeyError, ...
            bad.append((name, type(e).__name__))
        else:
            bad.append((name, "no error"))
    mod.ul2.set_num_threads(None)
    print(len(mod.CASES), sorted(bad))
    """
)


def test_no_bad_input_crashes_the_process():
    r = subprocess.run(
        [sys.executable, "-c", CHILD.format(path=os.path.abspath(__file__))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    count, bad = r.stdout.strip().split(" ", 1)
    assert int(count) == len(CASES)
    # Nothing kills the child; the cases that fail in-process are reported there, not here,
    # except for the exception types that must never escape.
    assert "PanicException" not in bad, bad


# ---------------------------------------------------------------------------------------------
# Accepted edge cases next to the rejected ones (each checked for a correct result)
# ---------------------------------------------------------------------------------------------

SENTINEL_SET = frozenset(S.ids.tolist())


def invert(d, inputs: list[int], targets: list[int], eos: bool = True) -> list[int]:
    """Raw tokens of one example: prompt + body (+ EOS) and targets (+ EOS)."""
    e = 1 if eos else 0
    assert inputs[: len(d.prefix)] == list(d.prefix)
    body = inputs[len(d.prefix) : len(inputs) - e]
    tbody = targets[: len(targets) - e]
    if not isinstance(d, ul2.SpanCorruption):
        return body + tbody
    blocks: dict[int, list[int]] = {}
    cur = None
    for t in tbody:
        if t in SENTINEL_SET:
            cur = t
            blocks[t] = []
        else:
            blocks[cur].append(t)  # type: ignore[index]
    raw: list[int] = []
    for t in body:
        raw.extend(blocks[t] if t in SENTINEL_SET else [t])
    return raw


def hf_rows(out) -> list[tuple[list[int], list[int]]]:
    n_in = out["attention_mask"].sum(1)
    n_t = out["decoder_attention_mask"].sum(1)
    return [
        (out["input_ids"][r, : n_in[r]].tolist(), out["labels"][r, : n_t[r]].tolist())
        for r in range(out["input_ids"].shape[0])
    ]


def _tagged(mixture: ul2.Mixture) -> ul2.Mixture:
    """The same denoisers, each with its own one-token prompt (so an output row names its denoiser)."""
    return ul2.Mixture(
        [(dataclasses.replace(d, prefix=(100 + i,)), r) for i, (d, r) in enumerate(mixture.entries)]
    )


@pytest.mark.parametrize("name", ["t5", "ul2", "ul2r"])
@pytest.mark.parametrize("eos", [True, False])
def test_rows_of_length_0_1_2_are_accepted_and_round_trip(name, eos):
    m = _tagged(getattr(ul2.presets, name)())
    c = ul2.Collator(m, sentinels=ul2.Sentinels.t5(VOCAB, 200), inputs_length=512, eos_id=1 if eos else None)
    rows = [np.array([], np.int32), np.array([7], np.int32), np.array([8, 9], np.int32)] * 8
    keys = np.arange(len(rows)) * 7919
    out = hf_rows(c(rows, keys=keys))
    for i, (inputs, targets) in enumerate(out):
        assert [(inputs, targets)] == hf_rows(c([rows[i]], keys=[keys[i]]))
        d = m.denoisers[inputs[0] - 100]
        if eos:
            assert inputs[-1] == 1 and targets[-1] == 1
        assert invert(d, inputs, targets, eos) == rows[i].tolist(), (i, d, inputs, targets)


def test_zero_width_dense_rows_are_empty_rows_or_a_clear_error():
    """A [B, 0] int array is B empty rows: the same as a list of B empty arrays, or a
    ValueError naming ``rows``; never ``RuntimeError('internal error ...')``."""
    ragged = [np.zeros(0, np.int32)] * 3
    for pack in (False, True):
        c = collator(pack=pack)
        want = c(ragged, keys=[0, 1, 2])
        try:
            got = c(np.zeros((3, 0), np.int32), keys=[0, 1, 2])
        except ValueError as e:
            assert "rows" in str(e)
            continue
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_tiny_streams_are_accepted():
    for n in (0, 1, 2, 3):
        tokens = np.arange(10, 10 + n, dtype=np.int32)
        concat = ds(tokens)
        assert concat.num_samples == 0 and concat.tail == n and len(concat) == 0
        with pytest.raises(IndexError):
            concat[0]
        if n == 0:
            continue
        respect = ds(tokens, documents="respect", doc_offsets=[0, n])
        assert respect.num_samples == 1 and respect.tail == 0 and respect.span(0) == (0, n)
        ((inputs, targets),) = hf_rows(respect.batch([0]))
        assert invert(T5.denoisers[0], inputs, targets) == tokens.tolist()


def test_strided_read_only_and_list_tokens():
    """A strided view, a read-only array and a Python list are read as the equivalent
    contiguous array."""
    base = np.arange(2, 2 + 2 * 6000, dtype=np.int32)
    contiguous = ds(np.ascontiguousarray(base[::2]))
    want = contiguous.batch(list(range(len(contiguous))))
    strided = ds(base[::2])
    got = strided.batch(list(range(len(strided))))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    ro = np.ascontiguousarray(base[::2])
    ro.flags.writeable = False
    as_list = ds(base[::2].tolist(), dtype=np.int32)
    for other in (ds(ro), as_list):
        got = other.batch(list(range(len(other))))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_offsets_of_any_integer_dtype_are_read_alike():
    """doc_offsets in int32/int64/uint16/uint32 (and uint64, or a TypeError naming doc_offsets)."""
    offsets = [0, 3000, 3000, 7000, 20000]
    want = ds(doc_offsets=offsets, documents="respect")
    spans = [want.span(k) for k in range(want.num_samples)]
    for dt in (np.int32, np.int64, np.uint16, np.uint32, np.uint64):
        try:
            got = ds(doc_offsets=np.array(offsets, dt), documents="respect")
        except TypeError as e:
            assert dt == np.uint64 and "doc_offsets" in str(e)
            continue
        assert [got.span(k) for k in range(got.num_samples)] == spans


def test_apply_mask_on_read_only_and_memmap_tokens(tmp_path):
    tokens = np.arange(2, 42, dtype=np.int32)
    mask = ul2.noise_mask(40, 0.3, seed=1)
    want = ul2.apply_mask(tokens, mask, S, eos_id=1)
    ro = tokens.copy()
    ro.flags.writeable = False
    path = tmp_path / "t.i32"
    tokens.tofile(path)
    mm = np.memmap(path, dtype=np.int32, mode="r")
    for t in (ro, mm):
        got = ul2.apply_mask(t, mask, S, eos_id=1)
        for a, b in zip(got, want, strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rate", [1.0, 1e308, 5e-324, 1e-310], ids=["1", "1e308", "5e-324", "1e-310"])
def test_equal_rates_give_equal_frequencies_at_any_scale(rate):
    """Rates are unnormalised: (r, r) is a 50/50 mixture for any r > 0. Near float max the sum
    overflows to inf and for subnormal r the products lose precision; neither may skew the
    draws (3000+ samples: 50% +- 4 sigma)."""
    a, b = ul2.CausalLM(prefix=[3]), ul2.CausalLM(prefix=[4])
    d = ds(np.arange(2, 200_002, dtype=np.int32), ul2.Mixture([(a, rate), (b, rate)]), inputs_length=64)
    n = d.num_samples
    first = sum(d.denoiser(k) == 0 for k in range(n))
    assert abs(first - n / 2) < 4 * math.sqrt(n / 4), f"{first} of {n} samples drew mixture[0]"
