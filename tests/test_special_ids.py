"""Ids that rows carry besides their tokens (EOS, padding, prompts, separators) and the
sentinels themselves are checked like tokens: never a sentinel, never outside the vocabulary,
never cut to fit the output dtype."""

from __future__ import annotations

import numpy as np
import pytest
import ul2

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
