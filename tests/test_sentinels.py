"""``Sentinels``: the T5 layout, given ids, collisions and the overflow policies (in
``apply_mask`` and a ``Collator``) and their bad inputs. The ids that rows carry besides their
tokens (EOS, padding, prompts, separators) and the sentinels themselves are checked like tokens:
never a sentinel, never outside the vocabulary, never cut to fit the output dtype."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import ul2
from ul2 import testing

V = 1000
S = ul2.Sentinels.t5(32100)
T5 = ul2.SpanCorruption(3.0, 0.15)


def collator(**kw):
    kw.setdefault("sentinels", S)
    kw.setdefault("inputs_length", 512)
    return ul2.Collator(kw.pop("mixture", T5), **kw)


@pytest.mark.parametrize(
    ("kw", "needles"),
    [
        (dict(eos_id=32099), ("eos_id=32099", "<extra_id_0>")),
        (dict(eos_id=32000), ("eos_id=32000", "<extra_id_99>")),
        (dict(pad_id=32050), ("pad_id=32050", "<extra_id_49>")),
        (dict(eos_id=32100), ("eos_id=32100", "vocab_size=32100")),
        (dict(pad_id=10**6), ("pad_id=1000000", "vocab_size=32100")),
        (dict(eos_id=2**31, sentinels=ul2.Sentinels.from_ids([5, 6])), ("eos_id=2147483648", "int64")),
        (dict(mixture=ul2.SpanCorruption(3.0, 0.15, prefix=[7, 32099])), ("mixture[0]", "prefix=32099")),
        (dict(mixture=ul2.PrefixLM(0.5, prefix=[40000])), ("mixture[0]", "prefix=40000", "vocab_size")),
    ],
)
def test_special_ids_are_checked_against_sentinels_and_vocabulary(kw, needles):
    with pytest.raises(ValueError) as e:
        collator(**kw)
    for n in needles:
        assert n in str(e.value), str(e.value)


def test_special_ids_may_be_sentinels_when_collisions_are_not_checked():
    s = ul2.Sentinels.t5(32100, check_collisions=False)
    out = collator(sentinels=s, eos_id=32099)(np.full((1, 568), 5, np.int32), keys=[0])
    assert out["input_ids"][0, -1] == 32099


def test_dataset_checks_special_ids_and_separator():
    tokens = np.full(5000, 5, np.int32)
    with pytest.raises(ValueError, match=r"eos_id=32099.*<extra_id_0>"):
        ul2.DenoisingDataset(tokens, T5, sentinels=S, inputs_length=512, eos_id=32099)
    with pytest.raises(ValueError, match=r"separator_id=32099.*<extra_id_0>"):
        ul2.DenoisingDataset(
            tokens, T5, sentinels=S, inputs_length=512, doc_offsets=[0, 100], separator_id=32099
        )
    with pytest.raises(ValueError, match=r"separator_id=40000.*vocab"):
        ul2.DenoisingDataset(
            tokens, T5, sentinels=S, inputs_length=512, doc_offsets=[0, 100], separator_id=40000
        )


def test_collator_refuses_sentinels_wider_than_the_output_dtype():
    wide = ul2.Sentinels.from_ids([2**32 + 7, 2**32 + 8])
    with pytest.raises(ValueError, match=r"sentinels=<extra_id_1>=4294967304.*int64"):
        collator(sentinels=wide, mixture=ul2.SpanCorruption(3.0, 0.01))
    # int64 outputs hold them.
    out = collator(sentinels=wide, mixture=ul2.SpanCorruption(3.0, 0.01), dtype=np.int64)(
        np.full((1, 100), 5, np.int64), keys=[0]
    )
    assert 2**32 + 7 in out["input_ids"]


def test_apply_mask_never_truncates_sentinel_ids():
    """An id of 2**32 + 7 once became 7, a real token, in int32 outputs."""
    wide = ul2.Sentinels.from_ids([2**32 + 7, 2**32 + 8])
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 0], bool)
    with pytest.raises(ValueError, match=r"sentinels=<extra_id_1>=4294967304.*int64 tokens"):
        ul2.apply_mask(np.arange(2, 10, dtype=np.int32), mask, wide)
    inputs, targets = ul2.apply_mask(np.arange(2, 10, dtype=np.int64), mask, wide)
    assert inputs.tolist() == [2, 3, 2**32 + 7, 6, 7, 8, 9]
    assert targets.tolist() == [2**32 + 7, 4, 5, 2**32 + 8]


@pytest.mark.parametrize("eos", [32099, 32100, -1])
def test_apply_mask_checks_eos(eos):
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 0], bool)
    with pytest.raises(ValueError, match="eos_id"):
        ul2.apply_mask(np.arange(2, 10, dtype=np.int32), mask, S, eos_id=eos)


# --- Sentinels ---------------------------------------------------------------------------------


def test_sentinels_t5_layout() -> None:
    s = ul2.Sentinels.t5(32100)
    assert s.count == len(s) == 100
    assert s.vocab_size == 32100
    assert s.ids.tolist() == [32099 - k for k in range(100)]
    assert s.ids[0] == 32099 and s.ids[99] == 32000  # <extra_id_0>, <extra_id_99>
    assert s.on_overflow == "error" and s.check_collisions is True
    small = ul2.Sentinels.t5(1000, count=3)
    assert small.ids.tolist() == [999, 998, 997]
    assert pickle.loads(pickle.dumps(s)) == s


def test_sentinels_from_ids() -> None:
    s = ul2.Sentinels.from_ids([5, 9, 7])
    assert s.ids.tolist() == [5, 9, 7] and s.count == 3
    tokens = np.array([20, 21, 22, 23, 24], dtype=np.int32)
    mask = np.array([False, True, False, True, True])
    inputs, targets = ul2.apply_mask(tokens, mask, s)
    assert inputs.tolist() == [20, 5, 22, 9]
    assert targets.tolist() == [5, 21, 9, 23, 24]


def test_sentinel_collision_is_rejected() -> None:
    s = ul2.Sentinels.t5(V, count=3)
    tokens = np.array([10, 998, 12], dtype=np.int32)
    mask = np.array([False, False, True])
    with pytest.raises(ValueError, match="tokens"):
        ul2.apply_mask(tokens, mask, s)
    unchecked = ul2.Sentinels.t5(V, count=3, check_collisions=False)
    inputs, targets = ul2.apply_mask(tokens, mask, unchecked)
    assert inputs.tolist() == [10, 998, 999] and targets.tolist() == [999, 12]


# --- overflow policies (reference §4.3) --------------------------------------------------------

FIVE_SPANS = np.array([False, True] * 5)


def test_overflow_error() -> None:
    s = ul2.Sentinels.t5(V, count=3, on_overflow="error")
    with pytest.raises(ul2.SentinelOverflowError) as info:
        ul2.apply_mask(np.arange(10, 20, dtype=np.int32), FIVE_SPANS, s)
    assert isinstance(info.value, ValueError)
    # Exactly as many spans as sentinels is fine.
    inputs, _ = ul2.apply_mask(np.arange(10, 16, dtype=np.int32), FIVE_SPANS[:6], s)
    assert inputs.tolist() == [10, 999, 12, 998, 14, 997]


def test_overflow_t5_keeps_counting_down() -> None:
    s = ul2.Sentinels.t5(V, count=3, on_overflow="t5")
    inputs, targets = ul2.apply_mask(np.arange(10, 20, dtype=np.int32), FIVE_SPANS, s)
    assert inputs.tolist() == [10, 999, 12, 998, 14, 997, 16, 996, 18, 995]
    assert targets.tolist() == [999, 11, 998, 13, 997, 15, 996, 17, 995, 19]


# ---------------------------------------------------------------------------------------------
# Bad inputs (SPEC §8.7), and the overflow and collision policies in a Collator
# ---------------------------------------------------------------------------------------------

VOCAB = 32100
GOOD_ROWS = np.arange(2, 570, dtype=np.int32).reshape(1, 568)
ROW20 = np.arange(2, 22, dtype=np.int32)
MASK20 = np.zeros(20, bool)
MASK20[[4, 5, 10, 19]] = True
BAD = testing.BadInputs()
add = BAD.add


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


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_input(case: testing.BadInput) -> None:
    case.check()


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
    tokens = np.where(ROW20 == 9, VOCAB - 1, ROW20)
    with pytest.raises(ValueError, match="tokens"):
        ul2.apply_mask(tokens, MASK20, S)
    inputs, targets = ul2.apply_mask(tokens, MASK20, relaxed)
    assert len(inputs) + len(targets) == len(tokens) + 2 * 3  # 3 noise runs, each a sentinel in both
