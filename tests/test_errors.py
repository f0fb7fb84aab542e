"""SPEC §8.7: every bad input raises ``TypeError`` / ``ValueError`` whose message names the
argument (STYLE.md error mapping), and nothing crashes the process. Also the accepted edge
cases next to the rejected ones."""

from __future__ import annotations

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
NO_VOCAB = ul2.Sentinels.from_ids(list(range(1000, 1100)))  # no vocab_size: ids only bounded by the dtype
T5 = ul2.presets.t5()
GOOD_ROWS = np.arange(2, 570, dtype=np.int32).reshape(1, 568)
TOKENS = np.arange(2, 22, dtype=np.int32)
MASK = np.zeros(20, bool)
MASK[[4, 5, 10, 19]] = True


def collator(**kw):
    kw.setdefault("sentinels", S)
    kw.setdefault("inputs_length", 512)
    return ul2.Collator(kw.pop("mixture", T5), **kw)


def call(rows, keys=None, **kw):
    return collator(**kw)(rows, keys)


# (id, thunk, exception type, substrings every message must contain)
CASES: list[tuple[str, object, type[BaseException], tuple[str, ...]]] = []


def case(id_: str, exc: type[BaseException], *needles: str):
    def deco(f):
        CASES.append((id_, f, exc, needles))
        return f

    return deco


def add(id_: str, f, exc: type[BaseException], *needles: str) -> None:
    CASES.append((id_, f, exc, needles))


BAD_DENSITIES = [math.nan, math.inf, -math.inf, -0.1, 1.5]
BAD_MEANS = [0.0, -1.0, math.nan, -math.inf]

# ---- span_counts ---------------------------------------------------------------------------
for r in BAD_DENSITIES:
    add(f"span_counts-noise_density={r}", lambda r=r: ul2.span_counts(100, r), ValueError, "noise_density")
for mu in BAD_MEANS:
    add(
        f"span_counts-mean_span_length={mu}",
        lambda mu=mu: ul2.span_counts(100, 0.15, mu),
        ValueError,
        "mean_span_length",
    )
add("span_counts-length=-1", lambda: ul2.span_counts(-1, 0.15), ValueError, "length")
add("span_counts-length=float", lambda: ul2.span_counts(10.0, 0.15), TypeError, "length")
add("span_counts-length=bool", lambda: ul2.span_counts(True, 0.15), TypeError, "length")
add("span_counts-length=str", lambda: ul2.span_counts("10", 0.15), TypeError, "length")
add("span_counts-length=2**64", lambda: ul2.span_counts(2**64, 0.15), ValueError, "length")
add("span_counts-noise_density=str", lambda: ul2.span_counts(10, "0.15"), TypeError, "noise_density")
add("span_counts-noise_density=None", lambda: ul2.span_counts(10, None), TypeError, "noise_density")
add("span_counts-noise_density=bool", lambda: ul2.span_counts(10, True), TypeError, "noise_density")
add("span_counts-mean_span_length=str", lambda: ul2.span_counts(10, 0.15, "3"), TypeError, "mean_span_length")
# r > .5 with n > L - N: T5 crashes; ul2 names the values (SPEC §2).
add("span_counts-r>.5-small-mu", lambda: ul2.span_counts(100, 0.9, 1.0), ValueError, "noise_density")

# ---- noise_mask ----------------------------------------------------------------------------
for r in BAD_DENSITIES:
    add(f"noise_mask-noise_density={r}", lambda r=r: ul2.noise_mask(100, r), ValueError, "noise_density")
for mu in BAD_MEANS:
    add(
        f"noise_mask-mean_span_length={mu}",
        lambda mu=mu: ul2.noise_mask(100, 0.15, mu),
        ValueError,
        "mean_span_length",
    )
add("noise_mask-length=-1", lambda: ul2.noise_mask(-1, 0.15), ValueError, "length")
add("noise_mask-length=float", lambda: ul2.noise_mask(10.5, 0.15), TypeError, "length")
add("noise_mask-num_spans=-1", lambda: ul2.noise_mask(100, 0.15, num_spans=-1), ValueError, "num_spans")
add("noise_mask-num_spans=0", lambda: ul2.noise_mask(100, 0.15, num_spans=0), ValueError, "num_spans")
add("noise_mask-num_spans>N", lambda: ul2.noise_mask(100, 0.15, num_spans=16), ValueError, "num_spans")
add("noise_mask-num_spans=float", lambda: ul2.noise_mask(100, 0.15, num_spans=2.0), TypeError, "num_spans")
add("noise_mask-random_roll=int", lambda: ul2.noise_mask(100, 0.15, random_roll=1), TypeError, "random_roll")
add("noise_mask-seed=-1", lambda: ul2.noise_mask(100, 0.15, seed=-1), ValueError, "seed")
add("noise_mask-seed=2**64", lambda: ul2.noise_mask(100, 0.15, seed=2**64), ValueError, "seed")
add("noise_mask-seed=float", lambda: ul2.noise_mask(100, 0.15, seed=1.0), TypeError, "seed")
add("noise_mask-key=-1", lambda: ul2.noise_mask(100, 0.15, key=-1), ValueError, "key")
add("noise_mask-key=str", lambda: ul2.noise_mask(100, 0.15, key="1"), TypeError, "key")
add("noise_mask-r>.5-small-mu", lambda: ul2.noise_mask(100, 0.9, 1.0), ValueError, "noise_density")
add("noise_mask-r>.5-num_spans", lambda: ul2.noise_mask(100, 0.9, num_spans=20), ValueError, "num_spans")

# ---- apply_mask ----------------------------------------------------------------------------
for dt in [np.float64, np.float32, np.bool_, object, np.int8, np.uint64, np.int16, np.uint8]:
    add(
        f"apply_mask-tokens-dtype={np.dtype(dt)}",
        lambda dt=dt: ul2.apply_mask(TOKENS.astype(dt), MASK, S),
        TypeError,
        "tokens",
    )
add(
    "apply_mask-tokens-0d",
    lambda: ul2.apply_mask(np.int32(5), MASK[:1], S),
    (TypeError, ValueError),
    "tokens",
)
add(
    "apply_mask-tokens-0d-array",
    lambda: ul2.apply_mask(np.array(5, np.int32), MASK[:1], S),
    ValueError,
    "tokens",
)
add("apply_mask-tokens-2d", lambda: ul2.apply_mask(TOKENS.reshape(4, 5), MASK, S), ValueError, "tokens")
add("apply_mask-tokens-3d", lambda: ul2.apply_mask(TOKENS.reshape(2, 2, 5), MASK, S), ValueError, "tokens")
add("apply_mask-tokens-str", lambda: ul2.apply_mask("abc", MASK[:3], S), TypeError, "tokens")
add("apply_mask-tokens-None", lambda: ul2.apply_mask(None, MASK, S), TypeError, "tokens")
add(
    "apply_mask-tokens-negative",
    lambda: ul2.apply_mask(np.where(TOKENS == 9, -3, TOKENS), MASK, S),
    ValueError,
    "tokens",
    "-3",
)
add(
    "apply_mask-tokens-negative-int64",
    lambda: ul2.apply_mask(np.where(TOKENS == 9, -3, TOKENS).astype(np.int64), MASK, S),
    ValueError,
    "tokens",
)
add(
    "apply_mask-tokens>=vocab",
    lambda: ul2.apply_mask(np.where(TOKENS == 9, VOCAB, TOKENS), MASK, S),
    ValueError,
    "tokens",
    str(VOCAB),
)
add("apply_mask-mask-float", lambda: ul2.apply_mask(TOKENS, MASK.astype(float), S), TypeError, "mask")
add("apply_mask-mask-int", lambda: ul2.apply_mask(TOKENS, MASK.astype(np.int32), S), TypeError, "mask")
add("apply_mask-mask-2d", lambda: ul2.apply_mask(TOKENS, MASK.reshape(4, 5), S), ValueError, "mask")
add("apply_mask-mask-length", lambda: ul2.apply_mask(TOKENS, MASK[:-1], S), ValueError, "mask")
add("apply_mask-mask-None", lambda: ul2.apply_mask(TOKENS, None, S), TypeError, "mask")
add("apply_mask-sentinels-str", lambda: ul2.apply_mask(TOKENS, MASK, "S"), TypeError, "sentinels")
add("apply_mask-sentinels-list", lambda: ul2.apply_mask(TOKENS, MASK, [32099, 32098]), TypeError, "sentinels")
add("apply_mask-eos_id=-1", lambda: ul2.apply_mask(TOKENS, MASK, S, eos_id=-1), ValueError, "eos_id")
add("apply_mask-eos_id=float", lambda: ul2.apply_mask(TOKENS, MASK, S, eos_id=1.0), TypeError, "eos_id")
add(
    "apply_mask-collision",
    lambda: ul2.apply_mask(np.where(TOKENS == 9, VOCAB - 1, TOKENS), MASK, S),
    ValueError,
    "tokens",
    str(VOCAB - 1),
)
add(
    "apply_mask-overflow",
    lambda: ul2.apply_mask(TOKENS, MASK, ul2.Sentinels.from_ids([100, 101])),
    ul2.SentinelOverflowError,
    "sentinels",
    "3",
    "2",
)
add(
    "apply_mask-overflow-cap",  # cap cannot shorten a given mask
    lambda: ul2.apply_mask(TOKENS, MASK, ul2.Sentinels.from_ids([100, 101], on_overflow="cap")),
    ul2.SentinelOverflowError,
    "sentinels",
    "3",
    "2",
)
add(
    "apply_mask-uint16-eos-too-big",
    lambda: ul2.apply_mask(TOKENS.astype(np.uint16), MASK, NO_VOCAB, eos_id=2**31),
    ValueError,
    "eos_id",
)

# ---- prefix_split --------------------------------------------------------------------------
for r in [math.nan, math.inf, -0.1, 0.6, 1.0, 2.0]:
    add(
        f"prefix_split-suffix_density={r}", lambda r=r: ul2.prefix_split(100, r), ValueError, "suffix_density"
    )
add("prefix_split-suffix_density=str", lambda: ul2.prefix_split(100, "0.5"), TypeError, "suffix_density")
add("prefix_split-length=-1", lambda: ul2.prefix_split(-1), ValueError, "length")
add("prefix_split-length=float", lambda: ul2.prefix_split(10.0), TypeError, "length")
add("prefix_split-seed=-1", lambda: ul2.prefix_split(100, seed=-1), ValueError, "seed")
add("prefix_split-key=-5", lambda: ul2.prefix_split(100, key=-5), ValueError, "key")
add("prefix_split-key=2**64", lambda: ul2.prefix_split(100, key=2**64), ValueError, "key")

# ---- plan_span_corruption ------------------------------------------------------------------
for r in BAD_DENSITIES:
    add(
        f"plan_span_corruption-noise_density={r}",
        lambda r=r: ul2.plan_span_corruption(512, r),
        ValueError,
        "noise_density",
    )
for mu in BAD_MEANS:
    add(
        f"plan_span_corruption-mean_span_length={mu}",
        lambda mu=mu: ul2.plan_span_corruption(512, 0.15, mu),
        ValueError,
        "mean_span_length",
    )
add(
    "plan_span_corruption-inputs_length=-1",
    lambda: ul2.plan_span_corruption(-1, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length=0",
    lambda: ul2.plan_span_corruption(0, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length=1",
    lambda: ul2.plan_span_corruption(1, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length=float",
    lambda: ul2.plan_span_corruption(512.0, 0.15),
    TypeError,
    "inputs_length",
)
add(
    "plan_span_corruption-targets_length=-1",
    lambda: ul2.plan_span_corruption(512, 0.15, targets_length=-1),
    ValueError,
    "targets_length",
)
add(
    "plan_span_corruption-targets_length=1",
    lambda: ul2.plan_span_corruption(512, 0.15, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan_span_corruption-prompt_length=-1",
    lambda: ul2.plan_span_corruption(512, 0.15, prompt_length=-1),
    ValueError,
    "prompt_length",
)
add(
    "plan_span_corruption-prompt_length>=inputs",
    lambda: ul2.plan_span_corruption(512, 0.15, prompt_length=512),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length-huge",  # beyond the planner's search range: say so
    lambda: ul2.plan_span_corruption(2**40, 0.15),
    ValueError,
    "inputs_length",
)
add(
    "plan_span_corruption-inputs_length-huge-with-targets",
    lambda: ul2.plan_span_corruption(2**40, 0.15, targets_length=2**61),
    ValueError,
    "inputs_length",
)
add("plan_span_corruption-eos=int", lambda: ul2.plan_span_corruption(512, 0.15, eos=1), TypeError, "eos")
add(
    "plan_span_corruption-r>.5-small-mu",
    lambda: ul2.plan_span_corruption(512, 0.9, 1.0),
    ValueError,
    "noise_density",
)

# ---- Sentinels.t5 / Sentinels.from_ids -----------------------------------------------------
add("Sentinels.t5-vocab_size=-1", lambda: ul2.Sentinels.t5(-1), ValueError, "vocab_size")
add("Sentinels.t5-vocab_size=0", lambda: ul2.Sentinels.t5(0), ValueError, "vocab_size")
add("Sentinels.t5-vocab_size=float", lambda: ul2.Sentinels.t5(32100.0), TypeError, "vocab_size")
add("Sentinels.t5-vocab_size=str", lambda: ul2.Sentinels.t5("32100"), TypeError, "vocab_size")
add("Sentinels.t5-vocab_size=None", lambda: ul2.Sentinels.t5(None), TypeError, "vocab_size")
add("Sentinels.t5-count=-1", lambda: ul2.Sentinels.t5(VOCAB, -1), ValueError, "count")
add("Sentinels.t5-count=0", lambda: ul2.Sentinels.t5(VOCAB, 0), ValueError, "count")
add("Sentinels.t5-count>vocab", lambda: ul2.Sentinels.t5(50, 51), ValueError, "count")
add("Sentinels.t5-count=float", lambda: ul2.Sentinels.t5(VOCAB, 100.0), TypeError, "count")
add(
    "Sentinels.t5-on_overflow=bogus",
    lambda: ul2.Sentinels.t5(VOCAB, on_overflow="bogus"),
    ValueError,
    "on_overflow",
)
add("Sentinels.t5-on_overflow=int", lambda: ul2.Sentinels.t5(VOCAB, on_overflow=1), TypeError, "on_overflow")
add(
    "Sentinels.t5-check_collisions=str",
    lambda: ul2.Sentinels.t5(VOCAB, check_collisions="no"),
    TypeError,
    "check_collisions",
)
add(
    "Sentinels.t5-check_collisions=int",
    lambda: ul2.Sentinels.t5(VOCAB, check_collisions=0),
    TypeError,
    "check_collisions",
)
add("Sentinels.from_ids-negative", lambda: ul2.Sentinels.from_ids([5, -1]), ValueError, "ids")
add("Sentinels.from_ids-duplicate", lambda: ul2.Sentinels.from_ids([5, 6, 5]), ValueError, "ids")
add("Sentinels.from_ids-float", lambda: ul2.Sentinels.from_ids([5, 6.0]), TypeError, "ids")
add("Sentinels.from_ids-float-array", lambda: ul2.Sentinels.from_ids(np.array([5.0, 6.0])), TypeError, "ids")
add("Sentinels.from_ids-bool", lambda: ul2.Sentinels.from_ids([True, 5]), TypeError, "ids")
add("Sentinels.from_ids-int", lambda: ul2.Sentinels.from_ids(5), TypeError, "ids")
add("Sentinels.from_ids-str", lambda: ul2.Sentinels.from_ids("abc"), TypeError, "ids")
add("Sentinels.from_ids-None", lambda: ul2.Sentinels.from_ids(None), TypeError, "ids")
add("Sentinels.from_ids-too-big", lambda: ul2.Sentinels.from_ids([2**64]), ValueError, "ids")
add(
    "Sentinels.from_ids-on_overflow=bogus",
    lambda: ul2.Sentinels.from_ids([5], on_overflow="wrap"),
    ValueError,
    "on_overflow",
)
add(
    "Sentinels.from_ids-check_collisions=None-ok-but-str-bad",
    lambda: ul2.Sentinels.from_ids([5], check_collisions="False"),
    TypeError,
    "check_collisions",
)

# ---- SpanCorruption / PrefixLM / Mixture ---------------------------------------------------
for r in BAD_DENSITIES:
    add(
        f"SpanCorruption-noise_density={r}",
        lambda r=r: ul2.SpanCorruption(3.0, r),
        ValueError,
        "noise_density",
    )
for mu in BAD_MEANS:
    add(
        f"SpanCorruption-mean_span_length={mu}",
        lambda mu=mu: ul2.SpanCorruption(mu, 0.15),
        ValueError,
        "mean_span_length",
    )
add(
    "SpanCorruption-mean_span_length=str",
    lambda: ul2.SpanCorruption("3", 0.15),
    TypeError,
    "mean_span_length",
)
add("SpanCorruption-noise_density=None", lambda: ul2.SpanCorruption(3.0, None), TypeError, "noise_density")
add("SpanCorruption-num_spans=0", lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=0), ValueError, "num_spans")
add(
    "SpanCorruption-num_spans=-2",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=-2),
    ValueError,
    "num_spans",
)
add(
    "SpanCorruption-num_spans=float",
    lambda: ul2.SpanCorruption(3.0, 0.15, num_spans=2.0),
    TypeError,
    "num_spans",
)
add(
    "SpanCorruption-random_roll=int",
    lambda: ul2.SpanCorruption(3.0, 0.15, random_roll=1),
    TypeError,
    "random_roll",
)
add(
    "SpanCorruption-prefix-negative",
    lambda: ul2.SpanCorruption(3.0, 0.15, prefix=(3, -1)),
    ValueError,
    "prefix",
)
add("SpanCorruption-prefix-str", lambda: ul2.SpanCorruption(3.0, 0.15, prefix="[NLU]"), TypeError, "prefix")
add(
    "SpanCorruption-prefix-float", lambda: ul2.SpanCorruption(3.0, 0.15, prefix=(3, 1.5)), TypeError, "prefix"
)
add("SpanCorruption-prefix-int", lambda: ul2.SpanCorruption(3.0, 0.15, prefix=5), TypeError, "prefix")
for r in [math.nan, math.inf, -0.1, 0.6, 1.5]:
    add(f"PrefixLM-suffix_density={r}", lambda r=r: ul2.PrefixLM(r), ValueError, "suffix_density")
add("PrefixLM-suffix_density=str", lambda: ul2.PrefixLM("0.5"), TypeError, "suffix_density")
add("PrefixLM-prefix-negative", lambda: ul2.PrefixLM(0.5, prefix=[-4]), ValueError, "prefix")
add("CausalLM-prefix-bytes", lambda: ul2.CausalLM(prefix=b"[S2S]"), TypeError, "prefix")
_D = ul2.SpanCorruption(3.0, 0.15)
add("Mixture-empty", lambda: ul2.Mixture([]), ValueError, "mixture")
for rate in [-1.0, math.nan, math.inf]:
    add(f"Mixture-rate={rate}", lambda rate=rate: ul2.Mixture([(_D, rate)]), ValueError, "rate")
add("Mixture-all-rates-zero", lambda: ul2.Mixture([(_D, 0.0), (ul2.PrefixLM(), 0.0)]), ValueError, "rate")
add("Mixture-rate=str", lambda: ul2.Mixture([(_D, "1")]), TypeError, "rate")
add("Mixture-rate=bool", lambda: ul2.Mixture([(_D, True)]), TypeError, "rate")
add("Mixture-not-a-pair", lambda: ul2.Mixture([(_D,)]), TypeError, "mixture")
add("Mixture-not-a-denoiser", lambda: ul2.Mixture([("R", 1.0)]), TypeError, "mixture")

# ---- plan ----------------------------------------------------------------------------------
add("plan-no-budget", lambda: ul2.plan(T5, sentinels=S), ValueError, "inputs_length")
add("plan-inputs_length=1", lambda: ul2.plan(T5, sentinels=S, inputs_length=1), ValueError, "inputs_length")
add("plan-inputs_length=0", lambda: ul2.plan(T5, sentinels=S, inputs_length=0), ValueError, "inputs_length")
add("plan-inputs_length=-1", lambda: ul2.plan(T5, sentinels=S, inputs_length=-1), ValueError, "inputs_length")
add(
    "plan-inputs_length=float",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512.0),
    TypeError,
    "inputs_length",
)
add(
    "plan-targets_length=1",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512, targets_length=1),
    ValueError,
    "targets_length",
)
add(
    "plan-both-budgets",
    lambda: ul2.plan(T5, sentinels=S, inputs_length=512, sequence_length=1024),
    ValueError,
    "sequence_length",
)
add("plan-sentinels=str", lambda: ul2.plan(T5, sentinels="S", inputs_length=512), TypeError, "sentinels")
add("plan-mixture=str", lambda: ul2.plan("t5", sentinels=S, inputs_length=512), TypeError, "mixture")
add(
    "plan-overflow",
    lambda: ul2.plan(ul2.presets.ul2(), sentinels=S, inputs_length=512),
    ul2.SentinelOverflowError,
    "mixture[",
    "100",
)
add(
    "plan-prompt-too-long",
    lambda: ul2.plan(ul2.SpanCorruption(3.0, 0.15, prefix=range(2, 600)), sentinels=S, inputs_length=512),
    ValueError,
    "inputs_length",
)

# ---- Collator constructor ------------------------------------------------------------------
add("Collator-inputs_length=1", lambda: collator(inputs_length=1), ValueError, "inputs_length")
add("Collator-inputs_length=0", lambda: collator(inputs_length=0), ValueError, "inputs_length")
add("Collator-inputs_length=-1", lambda: collator(inputs_length=-1), ValueError, "inputs_length")
add("Collator-inputs_length=None", lambda: collator(inputs_length=None), ValueError, "inputs_length")
add("Collator-inputs_length=float", lambda: collator(inputs_length=512.0), TypeError, "inputs_length")
add("Collator-targets_length=1", lambda: collator(targets_length=1), ValueError, "targets_length")
add("Collator-targets_length=-1", lambda: collator(targets_length=-1), ValueError, "targets_length")
add("Collator-format=tf", lambda: collator(format="tf"), ValueError, "format")
add("Collator-format=HF-case", lambda: collator(format="HF "), ValueError, "format")
add("Collator-format=int", lambda: collator(format=1), TypeError, "format")
for dt in [np.float32, np.int16, np.uint32, np.uint64, "bogus", bool, object]:
    add(f"Collator-dtype={dt}", lambda dt=dt: collator(dtype=dt), TypeError, "dtype")
add("Collator-sentinels=str", lambda: collator(sentinels="S"), TypeError, "sentinels")
add("Collator-sentinels=None", lambda: collator(sentinels=None), TypeError, "sentinels")
add("Collator-eos_id=-1", lambda: collator(eos_id=-1), ValueError, "eos_id")
add("Collator-eos_id=float", lambda: collator(eos_id=1.0), TypeError, "eos_id")
add("Collator-eos_id>int32", lambda: collator(eos_id=2**31), ValueError, "eos_id")
add("Collator-pad_id=-1", lambda: collator(pad_id=-1), ValueError, "pad_id")
add("Collator-pad_id>int32", lambda: collator(pad_id=2**31), ValueError, "pad_id")
add("Collator-seed=-1", lambda: collator(seed=-1), ValueError, "seed")
add("Collator-seed=2**64", lambda: collator(seed=2**64), ValueError, "seed")
add("Collator-seed=float", lambda: collator(seed=0.0), TypeError, "seed")
add("Collator-seed=None", lambda: collator(seed=None), TypeError, "seed")
add("Collator-mixture=str", lambda: collator(mixture="t5"), TypeError, "mixture")
add("Collator-mixture=empty", lambda: collator(mixture=[]), ValueError, "mixture")
add("Collator-sentinels>int32", lambda: collator(sentinels=ul2.Sentinels.t5(2**32)), ValueError, "sentinels")
add(
    "Collator-overflow",
    lambda: collator(mixture=ul2.presets.ul2()),
    ul2.SentinelOverflowError,
    "sentinels",
    "100",
    "noise spans",
)
add(
    "Collator-overflow-few-sentinels",
    lambda: collator(sentinels=ul2.Sentinels.t5(VOCAB, 10)),
    ul2.SentinelOverflowError,
    "sentinels",
    "10",
    "28",
)
add(
    "Collator-r>.5-small-mu",
    lambda: collator(mixture=[(ul2.SpanCorruption(1.0, 0.9), 1.0)]),
    ValueError,
    "noise_density",
)

# ---- Collator call -------------------------------------------------------------------------
for dt in [
    np.float64,
    np.float32,
    np.float16,
    np.bool_,
    object,
    np.int8,
    np.uint64,
    np.int16,
    np.uint8,
    np.complex64,
]:
    add(
        f"call-rows-dtype={np.dtype(dt)}",
        lambda dt=dt: call(GOOD_ROWS.astype(dt)),
        TypeError,
        "rows",
        "dtype",
    )
    add(
        f"call-ragged-dtype={np.dtype(dt)}",
        lambda dt=dt: call([GOOD_ROWS[0, :100].astype(dt)]),
        TypeError,
        "rows",
    )
add("call-rows-0d", lambda: call(np.array(5, np.int32)), ValueError, "rows")
add("call-rows-1d", lambda: call(GOOD_ROWS[0]), ValueError, "rows")
add("call-rows-3d", lambda: call(GOOD_ROWS.reshape(1, 1, 568)), ValueError, "rows")
add("call-ragged-2d-item", lambda: call([GOOD_ROWS]), ValueError, "rows")
add("call-ragged-0d-item", lambda: call([np.array(5, np.int32)]), ValueError, "rows")
add("call-rows-str", lambda: call("tokens"), TypeError, "rows")
add("call-rows-None", lambda: call(None), TypeError, "rows")
add("call-rows-dict", lambda: call({"input_ids": GOOD_ROWS}), TypeError, "rows")
add("call-rows-negative", lambda: call(np.where(GOOD_ROWS == 50, -7, GOOD_ROWS)), ValueError, "rows", "-7")
add(
    "call-rows-negative-ragged",
    lambda: call([GOOD_ROWS[0, :9], np.array([3, -1], np.int64)]),
    (TypeError, ValueError),
    "rows",
)
add(
    "call-rows-negative-int64",
    lambda: call(np.where(GOOD_ROWS == 50, -7, GOOD_ROWS).astype(np.int64)),
    ValueError,
    "rows",
    "-7",
)
add(
    "call-rows>=vocab",
    lambda: call(np.where(GOOD_ROWS == 50, VOCAB, GOOD_ROWS)),
    ValueError,
    "rows",
    str(VOCAB),
)
add(
    "call-rows-int64-2**31-int32-out",
    lambda: call(np.where(GOOD_ROWS == 50, 2**31, GOOD_ROWS.astype(np.int64)), sentinels=NO_VOCAB),
    ValueError,
    "rows",
    "token 2147483648",
)
add(
    "call-rows-uint32-2**32-1-int32-out",
    lambda: call(
        np.where(GOOD_ROWS == 50, 2**32 - 1, GOOD_ROWS.astype(np.uint32)).astype(np.uint32),
        sentinels=NO_VOCAB,
    ),
    ValueError,
    "rows",
    "token 4294967295",
)
add("call-rows-empty-2d", lambda: call(np.zeros((0, 568), np.int32)), ValueError, "rows")
add("call-rows-empty-0x0", lambda: call(np.zeros((0, 0), np.int32)), ValueError, "rows")
add("call-rows-empty-list", lambda: call([]), ValueError, "rows")
add("call-rows-empty-tuple", lambda: call(()), ValueError, "rows")
add(
    "call-ragged-mixed-dtypes",
    lambda: call([GOOD_ROWS[0, :50], GOOD_ROWS[0, :50].astype(np.int64)]),
    TypeError,
    "rows[1]",
)
add(
    "call-ragged-mixed-dtypes-later",
    lambda: call([GOOD_ROWS[0, :5], GOOD_ROWS[0, :5], GOOD_ROWS[0, :5].astype(np.uint16)]),
    TypeError,
    "rows[2]",
)
add("call-keys-too-few", lambda: call(np.vstack([GOOD_ROWS] * 3), keys=[0, 1]), ValueError, "keys")
add("call-keys-too-many", lambda: call(GOOD_ROWS, keys=[0, 1]), ValueError, "keys")
add("call-keys-negative", lambda: call(np.vstack([GOOD_ROWS] * 2), keys=[0, -1]), ValueError, "keys")
add("call-keys-negative-ndarray", lambda: call(GOOD_ROWS, keys=np.array([-5], np.int32)), ValueError, "keys")
add("call-keys-float", lambda: call(GOOD_ROWS, keys=[0.5]), TypeError, "keys")
add("call-keys-bool", lambda: call(GOOD_ROWS, keys=[True]), TypeError, "keys")
add("call-keys-2d", lambda: call(GOOD_ROWS, keys=[[0]]), ValueError, "keys")
add("call-keys-str", lambda: call(GOOD_ROWS, keys="0"), TypeError, "keys")
add(
    "call-row-too-long",
    lambda: call([GOOD_ROWS[0], np.arange(2, 700, dtype=np.int32)]),
    ValueError,
    "rows[1]",
    "raw_length=568",
)
add(
    "call-row-too-long-dense",
    lambda: call(np.arange(2, 2 + 2 * 569, dtype=np.int32).reshape(2, 569)),
    ValueError,
    "rows[0]",
    "raw_length=568",
)
add(
    "call-row-too-long-targets",  # targets_length explicitly smaller than some rows need
    lambda: call([np.arange(2, 300, dtype=np.int32), np.arange(2, 570, dtype=np.int32)], targets_length=100),
    ValueError,
    "rows[1]",
    "raw_length=496",  # the plan's raw length under targets_length=100
)
add(
    "call-collision",
    lambda: call(np.where(GOOD_ROWS == 50, VOCAB - 3, GOOD_ROWS)),
    ValueError,
    "rows",
    str(VOCAB - 3),
)
add(
    "call-collision-ragged",
    lambda: call([GOOD_ROWS[0, :10], np.array([5, VOCAB - 1], np.int32)]),
    ValueError,
    "rows[1]",
)


@pytest.mark.parametrize(("thunk", "exc", "needles"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(thunk, exc, needles):
    with pytest.raises(exc) as info:
        thunk()
    # Never a PyO3 PanicException (a BaseException) or a RuntimeError from the core.
    assert isinstance(info.value, (TypeError, ValueError))
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in message: {msg!r}"


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------------------------------------
# Specific messages and the overflow/collision policies
# ---------------------------------------------------------------------------------------------


def test_sentinel_overflow_error_is_a_value_error_with_numbers():
    assert issubclass(ul2.SentinelOverflowError, ValueError)
    with pytest.raises(ValueError) as info:
        collator(sentinels=ul2.Sentinels.t5(VOCAB, 10))
    assert type(info.value) is ul2.SentinelOverflowError
    msg = str(info.value)
    assert "28" in msg and "10" in msg  # 28 spans at 568 raw tokens, 10 sentinels


def test_collator_overflow_message_has_the_planned_numbers():
    # The most spans any ul2() denoiser needs at 512 inputs, from a plan with room for all.
    needed = max(
        r.sentinels
        for r in ul2.plan(ul2.presets.ul2(), sentinels=ul2.Sentinels.t5(VOCAB, 1000), inputs_length=512)
    )
    assert needed > 100
    with pytest.raises(ul2.SentinelOverflowError) as info:
        collator(mixture=ul2.presets.ul2())
    msg = str(info.value)
    assert str(needed) in msg and "100" in msg, msg


def test_overflow_policies_are_accepted_where_error_is_not():
    rows = np.arange(2, 570, dtype=np.int32).reshape(1, 568)
    for policy in ("cap", "t5"):
        s = ul2.Sentinels.t5(VOCAB, 10, on_overflow=policy)
        c = ul2.Collator(T5, sentinels=s, inputs_length=512)
        out = c(rows)
        assert out["input_ids"].shape[0] == 1
    s = ul2.Sentinels.t5(VOCAB, 10, on_overflow="cap")
    out = ul2.Collator(T5, sentinels=s, inputs_length=512)(rows)
    used = set(out["input_ids"][0].tolist()) & set(range(VOCAB - 100, VOCAB))
    assert used <= set(s.ids.tolist())


def test_sentinel_collision_and_check_collisions_false():
    rows = np.where(GOOD_ROWS == 50, VOCAB - 3, GOOD_ROWS)
    with pytest.raises(ValueError, match="check_collisions"):
        ul2.Collator(T5, sentinels=S, inputs_length=512)(rows)
    relaxed = ul2.Sentinels.t5(VOCAB, check_collisions=False)
    out = ul2.Collator(T5, sentinels=relaxed, inputs_length=512)(rows)
    assert out["input_ids"].shape == (1, 512)
    both = np.concatenate([out["input_ids"][0], out["labels"][0]])
    assert (both == VOCAB - 3).sum() >= 1  # the raw token is carried through, not dropped
    tokens = np.where(TOKENS == 9, VOCAB - 1, TOKENS)
    with pytest.raises(ValueError, match="tokens"):
        ul2.apply_mask(tokens, MASK, S)
    inputs, targets = ul2.apply_mask(tokens, MASK, relaxed)
    assert len(inputs) + len(targets) == len(tokens) + 2 * 3  # 3 noise runs, each a sentinel in both


def test_int64_rows_beyond_int32_are_accepted_with_int64_output():
    rows = np.where(GOOD_ROWS == 50, 2**31, GOOD_ROWS.astype(np.int64))
    out = ul2.Collator(T5, sentinels=NO_VOCAB, inputs_length=512, dtype=np.int64)(rows)
    both = np.concatenate([out["input_ids"][0], out["labels"][0]])
    assert (both == 2**31).sum() == 1
    rows32 = np.where(GOOD_ROWS == 50, 2**32 - 1, GOOD_ROWS.astype(np.uint32)).astype(np.uint32)
    out = ul2.Collator(T5, sentinels=NO_VOCAB, inputs_length=512, dtype=np.int64)(rows32)
    both = np.concatenate([out["input_ids"][0], out["labels"][0]])
    assert (both == 2**32 - 1).sum() == 1


def test_a_failed_call_does_not_advance_next_key_or_poison_the_collator():
    c = collator()
    c(GOOD_ROWS)
    assert c.next_key == 1
    good = collator()(GOOD_ROWS, keys=[1])
    with pytest.raises(ValueError):
        c(np.where(GOOD_ROWS == 50, -7, GOOD_ROWS))
    with pytest.raises(TypeError):
        c(GOOD_ROWS.astype(np.float32))
    out = c(GOOD_ROWS, keys=[1])
    np.testing.assert_array_equal(out["input_ids"], good["input_ids"])


def test_error_in_one_row_names_that_row():
    rows = np.vstack([GOOD_ROWS] * 5)
    rows[3, 100] = VOCAB + 5
    with pytest.raises(ValueError, match=r"rows\[3\]") as info:
        collator()(rows)
    assert str(VOCAB + 5) in str(info.value)


# ---------------------------------------------------------------------------------------------
# Accepted edge cases next to the rejected ones
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("r", [0.15, 0.5, 0.0, 1.0])
def test_noise_mask_tiny_lengths(r):
    m0 = ul2.noise_mask(0, r)
    assert m0.dtype == np.bool_ and m0.shape == (0,)
    assert ul2.noise_mask(1, r).tolist() == [False]
    assert ul2.noise_mask(2, r).tolist() == ([False, False] if r == 0.0 else [False, True])


def test_span_counts_tiny_lengths_and_zero_density():
    assert ul2.span_counts(0, 0.15) == (0, 0)
    assert ul2.span_counts(1, 0.15) == (0, 0)
    assert ul2.span_counts(2, 0.15) == (1, 1)
    assert ul2.span_counts(100, 0.0) == (0, 0)
    assert ul2.span_counts(100, 1.0, 100.0) == (99, 1)  # N clamped to L-1
    assert ul2.span_counts(100, 0.5) == (50, 17)  # r = .5: n <= L-N still holds


def test_boundary_scalars_are_accepted():
    assert ul2.prefix_split(0) == 0
    assert ul2.prefix_split(1) == 0
    assert ul2.prefix_split(100, 0.0) == 99
    assert 1 <= ul2.prefix_split(100, 0.5) <= 99
    assert ul2.noise_mask(10, 0.15, seed=2**64 - 1, key=2**64 - 1).shape == (10,)
    assert ul2.noise_mask(10, np.float32(0.15), np.int64(3)).shape == (10,)
    assert ul2.span_counts(np.int64(10), np.float64(0.5)) == (5, 2)
    ul2.SpanCorruption(3, 1)  # ints are numbers
    ul2.PrefixLM(0)
    ul2.Sentinels.t5(VOCAB, 1)
    ul2.Sentinels.from_ids(np.array([7, 8], np.uint16))
    ul2.Collator(T5, sentinels=S, inputs_length=512, seed=2**64 - 1, dtype="int64")


def test_apply_mask_edge_cases():
    inputs, targets = ul2.apply_mask(np.array([], np.int32), np.array([], bool), S)
    assert inputs.tolist() == [] and targets.tolist() == []  # reference §9.8: L=0 gives empty outputs
    inputs, targets = ul2.apply_mask([7], [False], S, eos_id=1)
    assert inputs.tolist() == [7, 1] and targets.tolist() == [VOCAB - 1, 1]
    inputs, targets = ul2.apply_mask([7, 8], [False, True], S)
    assert inputs.tolist() == [7, VOCAB - 1] and targets.tolist() == [VOCAB - 1, 8]


def test_set_num_threads_rejects_bad_values():
    try:
        with pytest.raises(ValueError, match="num_threads"):
            ul2.set_num_threads(0)
        with pytest.raises(ValueError, match="num_threads"):
            ul2.set_num_threads(-1)
        with pytest.raises(TypeError, match="num_threads"):
            ul2.set_num_threads(1.5)
    finally:
        ul2.set_num_threads(None)


# ---------------------------------------------------------------------------------------------
# No bad input crashes the process (checked in a child, so a crash cannot take pytest down)
# ---------------------------------------------------------------------------------------------

CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import importlib.util
    spec = importlib.util.spec_from_file_location("ul2_error_cases", {path!r})
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    bad = []
    for name, thunk, exc, needles in mod.CASES:
        try:
            thunk()
        except (TypeError, ValueError):
            pass
        except BaseException as e:
            bad.append((name, type(e).__name__, str(e)))
    print(len(mod.CASES), bad)
    """
)


# Absurd sizes: a clean ValueError (or MemoryError), never an abort or a PanicException.
# Each runs in its own child under an address-space limit, since today some abort.
HUGE = [
    ("noise_mask-length=2**62", "ul2.noise_mask(2**62, 0.15)", "length"),
    ("Sentinels.t5-count=2**62", "ul2.Sentinels.t5(2**62, 2**62)", "count"),
    ("Sentinels.t5-count=2**40", "ul2.Sentinels.t5(2**62, 2**40)", "count"),
    (
        "Collator-call-targets_length=2**40",
        "ul2.Collator(ul2.CausalLM(), sentinels=ul2.Sentinels.t5(32100),"
        " inputs_length=2**40, targets_length=2**40)(np.full((1, 5), 3, np.int32))",
        "length",
    ),
    (
        "Collator-call-lengths=2**62",
        "ul2.Collator(ul2.CausalLM(), sentinels=ul2.Sentinels.t5(32100),"
        " inputs_length=2**62, targets_length=2**62)(np.full((1, 5), 3, np.int32))",
        "length",
    ),
]

HUGE_SCRIPT = textwrap.dedent(
    """
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import numpy as np
    import ul2
    try:
        {expr}
    except ValueError as e:
        print("ValueError", e)
    except MemoryError as e:
        print("MemoryError", e)
    else:
        print("no error")
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS")
@pytest.mark.parametrize(("expr", "needle"), [h[1:] for h in HUGE], ids=[h[0] for h in HUGE])
def test_huge_sizes_raise_instead_of_aborting(expr, needle):
    r = subprocess.run(
        [sys.executable, "-c", HUGE_SCRIPT.format(expr=expr)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip().splitlines()[:3]}"
    kind, _, msg = r.stdout.strip().partition(" ")
    assert kind in ("ValueError", "MemoryError"), r.stdout
    if kind == "ValueError":
        assert needle in msg, msg


def test_no_bad_input_crashes_the_process():
    import os

    path = os.path.abspath(__file__)
    script = CRASH_SCRIPT.format(tests=os.path.dirname(path), path=path)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    count, bad = r.stdout.strip().split(" ", 1)
    assert int(count) == len(CASES)
    assert bad == "[]", bad


# Every allocation whose size follows from the input goes through a fallible path: under an
# address-space limit anywhere between "nothing fits" and "everything fits", a call either
# succeeds or raises MemoryError — the formatter's arrays and the composer's scratch once
# aborted the process instead (SIGABRT).
ALLOC_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import ul2
    ul2.set_num_threads(1)
    n = 1 << 24
    sentinels = ul2.Sentinels.t5(32100, on_overflow="cap")
    c = ul2.Collator(ul2.SpanCorruption(3.0, 0.15), sentinels=sentinels, inputs_length=n,
                     format=sys.argv[2], pack=sys.argv[3] == "1")
    rows = np.full((1, c.inputs_length), 5, np.int32)
    # The calling thread's pool, before the limit.
    ul2.Collator(ul2.SpanCorruption(3.0, 0.15), sentinels=sentinels, inputs_length=64)(rows[:, :60])
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    limit = vm + int(sys.argv[1]) * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        out = c(rows, keys=[0])
    except MemoryError as e:
        print("MemoryError", e)
    else:
        print("ok", sum(a.nbytes for a in out.values()))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc")
@pytest.mark.parametrize(("fmt", "pack"), [("hf", "1"), ("seqio", "0")])
def test_failed_allocations_are_memory_errors_at_every_step(fmt, pack):
    """Limits 32 MB apart from "nothing fits" to "everything fits" (each output array is
    64 MB), so a failure lands at each allocation of the call in turn. mimalloc reserves 1 GiB
    at a time, which would serve the whole call from memory reserved before the limit; 16 MiB
    arenas make every output buffer a reservation of its own, which the limit then meets."""
    seen = set()
    env = {**os.environ, "MIMALLOC_ARENA_RESERVE": "16384"}  # KiB
    for extra_mb in range(-48, 720, 32):
        r = subprocess.run(
            [sys.executable, "-c", ALLOC_SCRIPT, str(extra_mb), fmt, pack],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert r.returncode == 0, f"+{extra_mb} MB: exit {r.returncode}: {r.stderr.strip()[-500:]}"
        kind, _, msg = r.stdout.strip().partition(" ")
        assert kind in ("ok", "MemoryError"), r.stdout
        if kind == "MemoryError":
            assert "cannot allocate" in msg or not msg, msg  # ours, or one of Python's own
        seen.add(msg.split(":")[0] if kind == "MemoryError" else kind)
    # Both the denoiser's buffers and the formatter's arrays were met, and the call then fits.
    assert {"ok", "inputs_length", "rows"} <= seen, seen
