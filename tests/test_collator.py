"""``ul2.Collator`` end to end (SPEC §1 batch transform, §5 output formats, §6 determinism):
names, shapes, dtypes, padding relations, input kinds, keys, prompts, zero-copy outputs,
read-only / memmap inputs, determinism across batch splits and processes (thread counts are in
test_robustness.py), and the constructor's and the call's bad inputs next to the accepted edges."""

from __future__ import annotations

import dataclasses
import itertools
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import ul2
from hypothesis import given, settings
from hypothesis import strategies as st
from ul2 import testing

VOCAB = 32100
EOS, PAD = 1, 0
HF_NAMES = {"input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"}
SEQIO_NAMES = {
    "encoder_input_tokens",
    "decoder_target_tokens",
    "decoder_input_tokens",
    "decoder_loss_weights",
}
TOKEN_DTYPES = [np.int32, np.int64, np.uint16, np.uint32]


def sentinels() -> ul2.Sentinels:
    return ul2.Sentinels.t5(VOCAB)


def make(mixture=None, **kw) -> ul2.Collator:
    kw.setdefault("sentinels", sentinels())
    if "sequence_length" not in kw:
        kw.setdefault("inputs_length", 512)
    return ul2.Collator(ul2.presets.t5() if mixture is None else mixture, **kw)


def random_rows(b: int, length: int, seed: int = 0, dtype=np.int32, high: int = 32000) -> np.ndarray:
    """Ordinary ids in [2, high): never PAD, EOS or a sentinel of ``Sentinels.t5(32100)``."""
    return np.random.default_rng(seed).integers(2, high, (b, length)).astype(dtype)


def lengths_of(mask: np.ndarray) -> np.ndarray:
    return mask.sum(axis=1)


def check_hf_relations(out: dict[str, np.ndarray], *, eos_id: int | None = EOS, pad_id: int = PAD) -> None:
    """The padding relations of SPEC §5 (HF names), row by row."""
    ids, am = out["input_ids"], out["attention_mask"]
    labels, dii, dam = out["labels"], out["decoder_input_ids"], out["decoder_attention_mask"]
    b, li = ids.shape
    lt = labels.shape[1]
    ilen, tlen = lengths_of(am), lengths_of(dam)
    np.testing.assert_array_equal(am, (np.arange(li)[None, :] < ilen[:, None]).astype(am.dtype))
    np.testing.assert_array_equal(dam, (np.arange(lt)[None, :] < tlen[:, None]).astype(dam.dtype))
    for i in range(b):
        assert ilen[i] >= 1 and tlen[i] >= 1
        assert (ids[i, ilen[i] :] == pad_id).all()
        assert (labels[i, tlen[i] :] == -100).all()
        assert (labels[i, : tlen[i]] >= 0).all()
        if eos_id is not None:
            assert ids[i, ilen[i] - 1] == eos_id
            assert labels[i, tlen[i] - 1] == eos_id
    # Shifted labels inside the targets and pad beyond; the position right after the targets
    # is checked exactly by test_decoder_inputs_are_shift_tokens_right.
    shifted = hf_shift_tokens_right(labels, pad_id)
    after = np.arange(lt)[None, :] == tlen[:, None]
    np.testing.assert_array_equal(np.where(after, 0, dii), np.where(after, 0, shifted))


def hf_shift_tokens_right(labels: np.ndarray, pad_id: int) -> np.ndarray:
    """transformers' ``shift_tokens_right(labels, pad_token_id, decoder_start_token_id=pad_id)``."""
    shifted = np.concatenate([np.full((labels.shape[0], 1), pad_id, labels.dtype), labels[:, :-1]], axis=1)
    shifted[shifted == -100] = pad_id
    return shifted


def row_parts(out: dict[str, np.ndarray], i: int, eos: bool = True) -> tuple[list[int], list[int]]:
    """Row ``i``'s inputs and targets without padding (and without EOS when ``eos``)."""
    ilen = int(out["attention_mask"][i].sum())
    tlen = int(out["decoder_attention_mask"][i].sum())
    e = int(eos)
    return out["input_ids"][i, : ilen - e].tolist(), out["labels"][i, : tlen - e].tolist()


# ---------------------------------------------------------------------------------------------
# Names, shapes, dtypes, relations
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_hf_names_shapes_dtypes(dtype):
    c = make(dtype=dtype)
    assert (c.inputs_length, c.targets_length) == (512, 114)
    out = c(random_rows(6, 568))
    assert set(out) == HF_NAMES
    for name in ("input_ids", "attention_mask"):
        assert out[name].shape == (6, 512), name
    for name in ("labels", "decoder_input_ids", "decoder_attention_mask"):
        assert out[name].shape == (6, 114), name
    for name, arr in out.items():
        assert arr.dtype == np.dtype(dtype), name
        assert arr.flags.c_contiguous, name


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_hf_full_rows_fill_the_budget_exactly(dtype):
    # T5: 568 raw tokens -> 512 inputs and 114 targets, EOS included (SPEC §4 preset t5()).
    out = make(dtype=dtype)(random_rows(5, 568))
    assert (out["attention_mask"] == 1).all()
    assert (out["decoder_attention_mask"] == 1).all()
    assert (out["input_ids"][:, -1] == EOS).all()
    assert (out["labels"][:, -1] == EOS).all()
    check_hf_relations(out)


def test_hf_relations_on_ragged_rows():
    rng = np.random.default_rng(1)
    lengths = [568, 10, 2, 1, 300, 567, 100, 55]
    rows = [rng.integers(2, 32000, n).astype(np.int32) for n in lengths]
    out = make()(rows, keys=np.arange(len(rows)))
    check_hf_relations(out)
    ilen = lengths_of(out["attention_mask"])
    assert ilen[0] == 512
    assert (ilen[1:4] < 512).all()
    s = sentinels()
    for i, row in enumerate(rows):
        inputs, targets = row_parts(out, i)
        assert testing.reconstruct(inputs, targets, s.ids).tolist() == row.tolist(), i


def test_collator_row_is_the_primitives_composition():
    """A single-denoiser collator row is noise_mask + apply_mask under the same (seed, key):
    the batch transform and the primitives use the same arithmetic and the same keys."""
    s = sentinels()
    seed = 11
    rows = [
        np.random.default_rng(k).integers(2, 32000, n).astype(np.int32)
        for k, n in enumerate([568, 400, 37, 2])
    ]
    keys = [5, 0, 123456789, 2**63 - 1]
    out = make(seed=seed)(rows, keys=keys)
    for i, (row, key) in enumerate(zip(rows, keys, strict=True)):
        mask = ul2.noise_mask(len(row), 0.15, 3.0, seed=seed, key=key)
        inputs, targets = ul2.apply_mask(row, mask, s, eos_id=EOS)
        ilen, tlen = len(inputs), len(targets)
        np.testing.assert_array_equal(out["input_ids"][i, :ilen], inputs)
        np.testing.assert_array_equal(out["labels"][i, :tlen], targets)
        assert out["attention_mask"][i].sum() == ilen
        assert out["decoder_attention_mask"][i].sum() == tlen


@pytest.mark.parametrize("eos_id", [EOS, None])
@pytest.mark.parametrize("pad_id", [PAD, 7])
def test_decoder_inputs_are_shift_tokens_right(eos_id, pad_id):
    """SPEC §5: decoder_input_ids = labels shifted right with pad first, exactly as HF's
    ``shift_tokens_right`` on the padded labels (-100 -> pad): the last target token (EOS)
    also appears right after the targets when the row is not full."""
    rows = [
        np.arange(2, 570, dtype=np.int32),
        np.arange(2, 40, dtype=np.int32),
        np.arange(2, 300, dtype=np.int32),
    ]
    out = make(eos_id=eos_id, pad_id=pad_id)(rows, keys=[0, 1, 2])
    np.testing.assert_array_equal(out["decoder_input_ids"], hf_shift_tokens_right(out["labels"], pad_id))


def test_seqio_decoder_inputs_are_the_shifted_padded_targets():
    """seqio's EncDecFeatureConverter (unpacked) pads the targets, then applies
    ``make_autoregressive_inputs`` without segment ids: a plain shift right with 0 first."""
    rows = [np.arange(2, 570, dtype=np.int32), np.arange(2, 40, dtype=np.int32)]
    sq = make(format="seqio")(rows, keys=[0, 1])
    t = sq["decoder_target_tokens"]
    expected = np.concatenate([np.zeros((2, 1), t.dtype), t[:, :-1]], axis=1)
    np.testing.assert_array_equal(sq["decoder_input_tokens"], expected)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_seqio_names_and_relations(dtype):
    rng = np.random.default_rng(2)
    rows = [rng.integers(2, 32000, n).astype(np.int32) for n in [568, 200, 9, 450]]
    keys = [3, 1, 4, 1]
    hf = make(dtype=dtype, seed=5)(rows, keys=keys)
    sq = make(dtype=dtype, seed=5, format="seqio")(rows, keys=keys)
    assert set(sq) == SEQIO_NAMES
    for name, arr in sq.items():
        assert arr.dtype == np.dtype(dtype), name
    assert sq["encoder_input_tokens"].shape == (4, 512)
    for name in ("decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"):
        assert sq[name].shape == (4, 114), name
    np.testing.assert_array_equal(sq["encoder_input_tokens"], hf["input_ids"])
    targets = np.where(hf["labels"] == -100, 0, hf["labels"])
    np.testing.assert_array_equal(sq["decoder_target_tokens"], targets)
    np.testing.assert_array_equal(sq["decoder_loss_weights"], hf["decoder_attention_mask"])
    # Ordinary ids are never 0, so the loss weights are also seqio's (targets != 0).
    np.testing.assert_array_equal(sq["decoder_loss_weights"], (targets != 0).astype(dtype))
    shifted = np.concatenate([np.zeros((4, 1), dtype), targets[:, :-1]], axis=1)
    after = np.arange(114)[None, :] == lengths_of(hf["decoder_attention_mask"])[:, None]
    np.testing.assert_array_equal(np.where(after, 0, sq["decoder_input_tokens"]), np.where(after, 0, shifted))


def test_pad_id_is_used_for_inputs_and_decoder_inputs():
    rows = [np.arange(2, 40, dtype=np.int32), np.arange(2, 300, dtype=np.int32)]
    out = make(pad_id=7)(rows)
    check_hf_relations(out, pad_id=7)
    assert out["decoder_input_ids"][0, 0] == 7
    ilen = lengths_of(out["attention_mask"])
    assert (out["input_ids"][0, ilen[0] :] == 7).all()
    assert (out["labels"] == 7).sum() == 0  # labels pad with -100, never with pad_id


# ---------------------------------------------------------------------------------------------
# Input kinds and dtypes
# ---------------------------------------------------------------------------------------------


def test_ragged_equals_one_row_calls():
    rng = np.random.default_rng(3)
    rows = [rng.integers(2, 32000, n).astype(np.int32) for n in [568, 1, 60, 333, 2, 568]]
    c = make(seed=9)
    together = c(rows, keys=list(range(len(rows))))
    for i, row in enumerate(rows):
        alone = c(row[None, :], keys=[i])
        for name in HF_NAMES:
            np.testing.assert_array_equal(together[name][i], alone[name][0], err_msg=f"{name} row {i}")


def test_ragged_equals_dense_for_equal_lengths():
    rows = random_rows(5, 300, seed=4)
    c = make()
    dense = c(rows, keys=np.arange(5))
    ragged = c(list(rows), keys=np.arange(5))
    tupled = c(tuple(rows), keys=np.arange(5))
    for name in HF_NAMES:
        np.testing.assert_array_equal(dense[name], ragged[name])
        np.testing.assert_array_equal(dense[name], tupled[name])


def _views(kind: str, rows: np.ndarray) -> list[np.ndarray]:
    """The rows of ``rows`` as a list, each related to some base array in a different way."""
    n, width = rows.shape
    if kind == "own arrays":
        return [r.copy() for r in rows]
    if kind == "views of a 2-D base":
        return list(rows)
    if kind == "slices of a flat stream":
        flat = np.concatenate([[7, 8, 9], rows.ravel(), [10]]).astype(rows.dtype)
        return [flat[3 + i * width : 3 + (i + 1) * width] for i in range(n)]
    if kind == "views of two bases, interleaved":
        a, b = rows[::2].copy(), rows[1::2].copy()
        return [a[i // 2] if i % 2 == 0 else b[i // 2] for i in range(n)]
    if kind == "views of a non-contiguous base":
        columns = np.array(rows.T, order="F")  # column i is rows[i], contiguous; the base is not
        views = [columns[:, i] for i in range(n)]
        assert all(v.flags.c_contiguous and not v.base.flags.c_contiguous for v in views)
        return views
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "own arrays",
        "views of a 2-D base",
        "slices of a flat stream",
        "views of two bases, interleaved",
        "views of a non-contiguous base",
    ],
)
def test_ragged_views_of_shared_bases_equal_the_dense_batch(kind):
    # Views of one base share one borrow of it (the offsets are computed from data pointers):
    # every arrangement must give exactly the rows the list holds.
    rows = random_rows(9, 120, seed=12)
    c = make(seed=5)
    dense = c(rows, keys=np.arange(9))
    listed = _views(kind, rows)
    out = c(listed, keys=np.arange(9))
    for name in HF_NAMES:
        np.testing.assert_array_equal(dense[name], out[name], err_msg=f"{kind}: {name}")


def test_ragged_views_of_a_wider_base_are_read_at_their_own_dtype():
    # A view that reinterprets its base's bytes (int64 base, int32 view) is not a slice of
    # the base's elements: it must be read as the view it is.
    rows = random_rows(4, 128, seed=13)
    pairs = np.zeros((4, 64), dtype=np.int64)
    pairs.view(np.int32)[:] = rows
    views = [p.view(np.int32) for p in pairs]  # 128 int32 each, base is int64
    assert all(v.base is not None and v.base.dtype == np.int64 for v in views)
    c = make(seed=2)
    expected = c(np.stack([np.asarray(v).copy() for v in views]), keys=np.arange(4))
    out = c(views, keys=np.arange(4))
    for name in HF_NAMES:
        np.testing.assert_array_equal(expected[name], out[name])


@pytest.mark.parametrize("ragged", [False, True])
def test_all_input_dtypes_give_identical_outputs(ragged):
    base = random_rows(7, 568, seed=5, high=32000)
    outs = []
    for dt in TOKEN_DTYPES:
        rows = base.astype(dt)
        outs.append(make(seed=3)(list(rows) if ragged else rows, keys=np.arange(7)))
    for o in outs[1:]:
        for name in HF_NAMES:
            np.testing.assert_array_equal(outs[0][name], o[name], err_msg=name)
            assert o[name].dtype == np.int32


def test_python_lists_of_ints_are_accepted():
    rows = random_rows(2, 50, seed=6)
    c = make()
    a = c(rows, keys=[0, 1])
    b = c([r.tolist() for r in rows], keys=[0, 1])
    for name in HF_NAMES:
        np.testing.assert_array_equal(a[name], b[name])


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def test_default_keys_are_a_running_counter():
    rows = random_rows(8, 568, seed=7)
    c1 = make(seed=1)
    assert c1.next_key == 0
    first = c1(rows[:4])
    assert c1.next_key == 4
    second = c1(rows[4:])
    assert c1.next_key == 8
    c2 = make(seed=1)
    whole = c2(rows)
    assert c2.next_key == 8
    explicit = make(seed=1)(rows, keys=np.arange(8))
    for name in HF_NAMES:
        np.testing.assert_array_equal(np.concatenate([first[name], second[name]]), whole[name])
        np.testing.assert_array_equal(whole[name], explicit[name])


def test_explicit_keys_list_and_ndarray_agree():
    rows = random_rows(5, 568, seed=8)
    c = make(seed=2)
    keys = [17, 3, 2**40, 0, 99]
    outs = [
        c(rows, keys=keys),
        c(rows, keys=np.array(keys, dtype=np.int64)),
        c(rows, keys=np.array(keys, dtype=np.uint64).astype(np.int64)),
        c(rows, keys=tuple(keys)),
    ]
    for o in outs[1:]:
        for name in HF_NAMES:
            np.testing.assert_array_equal(outs[0][name], o[name])
    # Keys matter: the same rows under the default keys 0..4 differ.
    default = make(seed=2)(rows)
    assert not np.array_equal(default["input_ids"], outs[0]["input_ids"])


def test_uint64_keys_cover_the_whole_key_range():
    # Keys are RNG keys like noise_mask(key=...), which takes any int in [0, 2**64); a uint64
    # array is the natural container for them (np.asarray([2**63]) is uint64).
    rows = random_rows(3, 568, seed=21)
    keys = np.array([0, 2**63, 2**64 - 1], dtype=np.uint64)
    out = make(seed=3)(rows, keys=keys)
    for i, key in enumerate(keys.tolist()):
        mask = ul2.noise_mask(568, 0.15, 3.0, seed=3, key=key)
        inputs, targets = ul2.apply_mask(rows[i], mask, sentinels(), eos_id=EOS)
        np.testing.assert_array_equal(out["input_ids"][i], inputs)
        np.testing.assert_array_equal(out["labels"][i], targets)
    small = make(seed=3)(rows[:1], keys=np.array([0], np.uint64))
    np.testing.assert_array_equal(small["input_ids"][0], out["input_ids"][0])


def test_same_key_same_row_gives_the_same_example():
    row = random_rows(1, 568, seed=9)[0]
    out = make(seed=4)(np.stack([row, row, row]), keys=[6, 6, 7])
    np.testing.assert_array_equal(out["input_ids"][0], out["input_ids"][1])
    np.testing.assert_array_equal(out["labels"][0], out["labels"][1])
    assert not np.array_equal(out["input_ids"][0], out["input_ids"][2])


# ---------------------------------------------------------------------------------------------
# Mixtures with prompts, short rows, EOS, target budgets, too-long rows
# ---------------------------------------------------------------------------------------------


def test_prompt_is_prepended_and_rest_unchanged():
    prompt = (5, 6, 4)
    rows = [
        np.random.default_rng(k).integers(10, 32000, n).astype(np.int32) for k, n in enumerate([500, 37, 2])
    ]
    keys = [0, 1, 2]
    plain = make(ul2.SpanCorruption(3.0, 0.15), seed=8)(rows, keys=keys)
    prompted = make(ul2.SpanCorruption(3.0, 0.15, prefix=prompt), seed=8)(rows, keys=keys)
    p = len(prompt)
    np.testing.assert_array_equal(prompted["input_ids"][:, :p], np.tile(prompt, (3, 1)))
    np.testing.assert_array_equal(prompted["input_ids"][:, p:], plain["input_ids"][:, :-p])
    np.testing.assert_array_equal(prompted["labels"], plain["labels"])
    np.testing.assert_array_equal(
        lengths_of(prompted["attention_mask"]), lengths_of(plain["attention_mask"]) + p
    )


def test_mixture_with_prompts_each_row_starts_with_a_prompt():
    prompts = {"[NLU]": [3, 4], "[NLG]": [5], "[S2S]": [6, 7, 8]}
    s = ul2.Sentinels.t5(VOCAB, count=200)
    mixture = ul2.presets.ul2(prompts=prompts)
    c = ul2.Collator(mixture, sentinels=s, inputs_length=512, seed=1)
    plan = ul2.plan(mixture, sentinels=s, inputs_length=512)
    assert c.targets_length == max(r.targets_length for r in plan)
    rows = random_rows(120, 200, seed=10, high=31000)  # below every sentinel id (31900..32099)
    out = c(rows)
    check_hf_relations(out)
    seen = set()
    for i in range(len(rows)):
        head = out["input_ids"][i]
        matches = [name for name, p in prompts.items() if head[: len(p)].tolist() == p]
        assert len(matches) == 1, head[:4]
        seen.add(matches[0])
        inputs, targets = row_parts(out, i)
        body = inputs[len(prompts[matches[0]]) :]
        if matches[0] == "[S2S]":  # prefix LM: inputs ++ targets is the row, no sentinels
            assert body + targets == rows[i].tolist()
        else:
            assert testing.reconstruct(body, targets, s.ids).tolist() == rows[i].tolist()
    assert seen == set(prompts)


def test_short_row_works():
    row = np.arange(2, 12, dtype=np.int32)
    out = make()([row])
    check_hf_relations(out)
    inputs, targets = row_parts(out, 0)
    assert inputs[-1] in set(sentinels().ids.tolist())
    assert testing.reconstruct(inputs, targets, sentinels().ids).tolist() == row.tolist()
    assert out["attention_mask"].sum() < 12


def test_one_token_row_is_not_corrupted():
    # Reference §9.8: L=1 -> inputs [t0], targets [V-1] (then EOS).
    out = make()([np.array([42], np.int32)])
    inputs, targets = row_parts(out, 0, eos=False)
    assert inputs == [42, EOS]
    assert targets == [VOCAB - 1, EOS]


def test_eos_none_gives_no_eos():
    rows = random_rows(6, 300, seed=11)
    c = make(eos_id=None)
    out = c(rows)
    assert (
        c.targets_length
        == ul2.plan(ul2.presets.t5(), sentinels=sentinels(), inputs_length=512, eos=False)[0].targets_length
    )
    check_hf_relations(out, eos_id=None)
    assert not (out["input_ids"] == EOS).any()
    assert not (out["labels"] == EOS).any()
    with_eos = make()(rows, keys=np.arange(6))
    for i in range(6):
        a_in, a_t = row_parts(out, i, eos=False)
        b_in, b_t = row_parts(with_eos, i, eos=True)
        assert (a_in, a_t) == (b_in, b_t)


def test_eos_none_full_rows():
    # Without EOS the plan grows the raw length by one (569), and such rows fit exactly.
    raw = ul2.plan(ul2.presets.t5(), sentinels=sentinels(), inputs_length=512, eos=False)[0].raw_length
    out = make(eos_id=None)(random_rows(3, raw, seed=12))
    assert (out["attention_mask"] == 1).all()
    check_hf_relations(out, eos_id=None)


def test_explicit_larger_targets_length_pads_more():
    rows = [np.arange(2, 570, dtype=np.int32), np.arange(2, 100, dtype=np.int32)]
    small = make()(rows, keys=[0, 1])
    c = make(targets_length=200)
    assert c.targets_length == 200
    big = c(rows, keys=[0, 1])
    assert big["labels"].shape == (2, 200)
    assert big["decoder_input_ids"].shape == (2, 200)
    check_hf_relations(big)
    np.testing.assert_array_equal(big["labels"][:, :114], small["labels"])
    assert (big["labels"][:, 114:] == -100).all()
    assert (big["decoder_attention_mask"][:, 114:] == 0).all()
    np.testing.assert_array_equal(big["input_ids"], small["input_ids"])


def test_row_longer_than_planned_raw_length_raises_naming_the_row():
    rows = [
        np.arange(2, 570, dtype=np.int32),
        np.arange(2, 100, dtype=np.int32),
        np.arange(2, 700, dtype=np.int32),
    ]
    with pytest.raises(ValueError, match=r"rows\[2\]") as info:
        make(long_rows="error")(rows)
    assert "raw_length=568" in str(info.value)
    dense = np.vstack([np.arange(2, 571, dtype=np.int32)] * 2)  # 569 tokens: one more than planned
    with pytest.raises(ValueError, match=r"rows\[0\]"):
        make(long_rows="error")(dense)


# ---------------------------------------------------------------------------------------------
# Zero-copy and input kinds that must be borrowed, not copied
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["hf", "seqio"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_outputs_are_not_copies(fmt, dtype):
    out = make(format=fmt, dtype=dtype)(random_rows(3, 568, seed=13))
    for name, arr in out.items():
        assert arr.flags.owndata is False, name
        assert arr.base is not None, name
        assert arr.flags.writeable, name


def test_read_only_input_is_accepted_and_not_modified():
    rows = random_rows(4, 568, seed=14)
    ref = make(seed=2)(rows.copy(), keys=np.arange(4))
    ro = rows.copy()
    ro.setflags(write=False)
    out = make(seed=2)(ro, keys=np.arange(4))
    for name in HF_NAMES:
        np.testing.assert_array_equal(ref[name], out[name])
    np.testing.assert_array_equal(ro, rows)
    ro_list = [r for r in ro]
    out2 = make(seed=2)(ro_list, keys=np.arange(4))
    for name in HF_NAMES:
        np.testing.assert_array_equal(ref[name], out2[name])


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_memmap_input(tmp_path, dtype):
    rows = random_rows(4, 568, seed=15).astype(dtype)
    raw = tmp_path / "tokens.bin"
    rows.tofile(raw)
    mm = np.memmap(raw, dtype=dtype, mode="r", shape=rows.shape)
    ref = make(seed=6)(rows, keys=np.arange(4))
    out = make(seed=6)(mm, keys=np.arange(4))
    for name in HF_NAMES:
        np.testing.assert_array_equal(ref[name], out[name])
    # Ragged rows sliced out of one flat memmap (documents of different lengths).
    flat = np.memmap(raw, dtype=dtype, mode="r")
    offsets = [0, 568, 700, 1000, 1500]
    docs = [flat[a:b] for a, b in itertools.pairwise(offsets)]
    out2 = make(seed=6)(docs, keys=np.arange(4))
    ref2 = make(seed=6)([np.array(d) for d in docs], keys=np.arange(4))
    for name in HF_NAMES:
        np.testing.assert_array_equal(ref2[name], out2[name])
    # .npy through np.load(mmap_mode="r")
    npy = tmp_path / "tokens.npy"
    np.save(npy, rows)
    loaded = np.load(npy, mmap_mode="r")
    out3 = make(seed=6)(loaded, keys=np.arange(4))
    for name in HF_NAMES:
        np.testing.assert_array_equal(ref[name], out3[name])


def test_input_is_not_modified():
    rows = random_rows(4, 568, seed=16)
    before = rows.copy()
    ragged = [rows[0].copy(), rows[1, :30].copy()]
    ragged_before = [r.copy() for r in ragged]
    c = make()
    c(rows)
    c(ragged)
    np.testing.assert_array_equal(rows, before)
    for a, b in zip(ragged, ragged_before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_outputs_are_independent_between_calls():
    c = make()
    rows = random_rows(2, 568, seed=17)
    a = c(rows, keys=[0, 1])
    keep = {k: v.copy() for k, v in a.items()}
    b = c(rows, keys=[0, 1])
    b["input_ids"][:] = 0
    for name in HF_NAMES:
        np.testing.assert_array_equal(a[name], keep[name])
        assert not np.shares_memory(a[name], b[name])


# ---------------------------------------------------------------------------------------------
# Determinism (SPEC §6, §8.5)
# ---------------------------------------------------------------------------------------------


def mixed_rows(b: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 31000, int(n)).astype(np.int32) for n in rng.integers(1, 200, b)]


def mixed_collator(**kw) -> ul2.Collator:
    prompts = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}
    return ul2.Collator(
        ul2.presets.ul2(prompts=prompts),
        sentinels=ul2.Sentinels.t5(VOCAB, count=200),
        inputs_length=512,
        **kw,
    )


def test_same_keys_same_outputs_across_batch_splits():
    rows = mixed_rows(40, 18)
    keys = np.arange(1000, 1040)
    c = mixed_collator(seed=21)
    whole = c(rows, keys=keys)
    splits = [0, 1, 7, 8, 25, 40]
    parts = [c(rows[a:b], keys=keys[a:b]) for a, b in itertools.pairwise(splits)]
    perm = np.random.default_rng(0).permutation(40)
    shuffled = c([rows[i] for i in perm], keys=keys[perm])
    for name in HF_NAMES:
        np.testing.assert_array_equal(whole[name], np.concatenate([p[name] for p in parts]), err_msg=name)
        np.testing.assert_array_equal(whole[name][perm], shuffled[name], err_msg=name)
    # A fresh collator with the same seed gives the same examples.
    again = mixed_collator(seed=21)(rows, keys=keys)
    for name in HF_NAMES:
        np.testing.assert_array_equal(whole[name], again[name])


def test_different_seeds_give_different_outputs():
    rows = random_rows(8, 568, seed=20)
    a = make(seed=0)(rows, keys=np.arange(8))
    b = make(seed=1)(rows, keys=np.arange(8))
    assert not np.array_equal(a["input_ids"], b["input_ids"])
    assert not np.array_equal(a["labels"], b["labels"])
    # Every row differs, not just one: the seed enters every example's key.
    assert all(not np.array_equal(a["input_ids"][i], b["input_ids"][i]) for i in range(8))


SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import hashlib, sys
    import numpy as np
    import ul2
    rng = np.random.default_rng(0)
    rows = [rng.integers(2, 31000, int(n)).astype(np.int32) for n in rng.integers(1, 200, 64)]
    c = ul2.Collator(ul2.presets.ul2(prompts={"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}),
                     sentinels=ul2.Sentinels.t5(32100, count=200), inputs_length=512, seed=12345)
    out = c(rows, keys=np.arange(500, 564))
    h = hashlib.sha256()
    for name in sorted(out):
        h.update(name.encode()); h.update(np.ascontiguousarray(out[name]).tobytes())
    sys.stdout.write(h.hexdigest())
    """
)


def test_fresh_process_gives_the_same_bytes():
    ns: dict = {}
    # Run the same script here, capturing its output instead of printing it.
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        exec(compile(SUBPROCESS_SCRIPT, "<subprocess-script>", "exec"), ns)
    here = buf.getvalue()
    assert len(here) == 64
    child = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=_child_env(threads="1"),
    )
    assert child.stdout == here
    child2 = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=_child_env(threads="2"),
    )
    assert child2.stdout == here


def _child_env(threads: str) -> dict[str, str]:
    import os

    env = dict(os.environ)
    env["UL2_NUM_THREADS"] = threads
    return env


# ---------------------------------------------------------------------------------------------
# Hypothesis: the relations hold over dtypes, lengths, seeds and formats
# ---------------------------------------------------------------------------------------------


@settings(deadline=None)
@given(
    lengths=st.lists(st.integers(1, 568), min_size=1, max_size=6),
    in_dtype=st.sampled_from(TOKEN_DTYPES),
    out_dtype=st.sampled_from([np.int32, np.int64]),
    seed=st.integers(0, 2**64 - 1),
    key0=st.integers(0, 2**62),
    data=st.data(),
)
def test_relations_property(lengths, in_dtype, out_dtype, seed, key0, data):
    rows = [
        np.array(data.draw(st.lists(st.integers(2, 31999), min_size=n, max_size=n)), dtype=in_dtype)
        if n < 8
        else np.random.default_rng(n + key0 % 1000).integers(2, 32000, n).astype(in_dtype)
        for n in lengths
    ]
    keys = np.arange(key0, key0 + len(rows), dtype=np.int64)
    out = make(seed=seed, dtype=out_dtype)(rows, keys=keys)
    assert set(out) == HF_NAMES
    assert all(a.dtype == np.dtype(out_dtype) for a in out.values())
    check_hf_relations(out)
    ids = sentinels().ids
    for i, row in enumerate(rows):
        inputs, targets = row_parts(out, i)
        assert testing.reconstruct(inputs, targets, ids).tolist() == row.tolist()


# ---------------------------------------------------------------------------------------------
# Rows longer than their denoiser's raw length (SPEC §8.10): cut and counted, or refused
# ---------------------------------------------------------------------------------------------

UL2_SENTINELS = ul2.Sentinels.t5(VOCAB, count=200)


ENC_DEC_512 = dict(inputs_length=512, targets_length=512)


@pytest.mark.parametrize(("budget", "width"), [(ENC_DEC_512, 568), (dict(sequence_length=1024), 1000)])
@pytest.mark.parametrize("pack", [False, True])
def test_long_rows_give_their_first_raw_length_tokens(budget, width, pack):
    """nanoT5-style 568-token rows through ul2(): each row is the first raw-length tokens of its
    denoiser (PrefixLM's 511 at 512), byte for byte what that prefix gives with long_rows='error'."""
    mixture = ul2.presets.ul2()
    rows = random_rows(64, width, seed=3, high=31000)
    keys = np.arange(64)
    cut = ul2.Collator(mixture, sentinels=UL2_SENTINELS, pack=pack, **budget)
    exact = ul2.Collator(mixture, sentinels=UL2_SENTINELS, pack=pack, long_rows="error", **budget)
    # Example k's denoiser, as a dataset over the same mixture and seed draws it.
    ds = ul2.DenoisingDataset(np.full(64 * 1024, 5, np.int32), mixture, sentinels=UL2_SENTINELS, **budget)
    limits = [ds.raw_lengths[ds.denoiser(k)] for k in keys]
    assert min(limits) < width <= max(limits), limits  # some rows are cut, some are not
    with pytest.warns(UserWarning, match=r"tokens of \d+ rows .* were cut .*DenoisingDataset"):
        got = cut(rows, keys=keys)
    want = exact([r[: min(len(r), lim)] for r, lim in zip(rows, limits, strict=True)], keys=keys)
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    cut_tokens = sum(max(0, width - lim) for lim in limits)
    assert cut.stats["cut_tokens"] == cut_tokens > 0
    assert cut.stats["cut_rows"] == sum(lim < width for lim in limits)
    assert cut.stats["rows"] == 64 and cut.stats["tokens"] + cut_tokens == rows.size


def test_stats_count_every_token_and_padding_and_warn_once():
    c = make(inputs_length=512, targets_length=114)
    rows = [random_rows(1, n, seed=n)[0] for n in (100, 568, 700, 900)]
    with pytest.warns(UserWarning) as caught:
        out = c(rows, keys=[0, 1, 2, 3])
    assert len(caught) == 1
    padding = out["attention_mask"].size - out["attention_mask"].sum()
    padding += out["decoder_attention_mask"].size - out["decoder_attention_mask"].sum()
    assert c.stats == {
        "rows": 4,
        "tokens": 100 + 3 * 568,
        "cut_rows": 2,
        "cut_tokens": (700 - 568) + (900 - 568),
        "padding": int(padding),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c(rows, keys=[4, 5, 6, 7])  # counted again, warned no more
    assert c.stats["rows"] == 8 and c.stats["cut_tokens"] == 2 * ((700 - 568) + (900 - 568))


def test_long_rows_is_checked():
    with pytest.raises(ValueError, match=r"long_rows=\"trim\": must be 'cut' or 'error'"):
        make(long_rows="trim")
    with pytest.raises(TypeError, match="long_rows=None"):
        make(long_rows=None)


# ---------------------------------------------------------------------------------------------
# Bad inputs (SPEC §8.7), and the accepted edges next to them
# ---------------------------------------------------------------------------------------------

S = sentinels()
NO_VOCAB = ul2.Sentinels.from_ids(list(range(1000, 1100)))  # no vocab_size: ids only bounded by the dtype
T5 = ul2.presets.t5()
GOOD_ROWS = np.arange(2, 570, dtype=np.int32).reshape(1, 568)
LONG_ROW = np.arange(2, 20_002, dtype=np.int32)  # ordinary ids: never pad, EOS or a sentinel


def call(rows, keys=None, **kw):
    return make(**kw)(rows, keys)


BAD = testing.BadInputs()
add = BAD.add


# ---- Collator constructor ------------------------------------------------------------------
add("Collator-inputs_length=1", lambda: make(inputs_length=1), ValueError, "inputs_length")
add("Collator-inputs_length=0", lambda: make(inputs_length=0), ValueError, "inputs_length")
add("Collator-inputs_length=-1", lambda: make(inputs_length=-1), ValueError, "inputs_length")
add("Collator-inputs_length=None", lambda: make(inputs_length=None), ValueError, "inputs_length")
add("Collator-inputs_length=float", lambda: make(inputs_length=512.0), TypeError, "inputs_length")
add("Collator-targets_length=1", lambda: make(targets_length=1), ValueError, "targets_length")
add("Collator-targets_length=-1", lambda: make(targets_length=-1), ValueError, "targets_length")
add("Collator-format=tf", lambda: make(format="tf"), ValueError, "format")
add("Collator-format=HF-case", lambda: make(format="HF "), ValueError, "format")
add("Collator-format=int", lambda: make(format=1), TypeError, "format")
for dt in [np.float32, np.int16, np.uint32, np.uint64, "bogus", bool, object]:
    add(f"Collator-dtype={dt}", lambda dt=dt: make(dtype=dt), TypeError, "dtype")
add("Collator-sentinels=str", lambda: make(sentinels="S"), TypeError, "sentinels")
add("Collator-sentinels=None", lambda: make(sentinels=None), TypeError, "sentinels")
add("Collator-eos_id=-1", lambda: make(eos_id=-1), ValueError, "eos_id")
add("Collator-eos_id=float", lambda: make(eos_id=1.0), TypeError, "eos_id")
add("Collator-eos_id>int32", lambda: make(eos_id=2**31), ValueError, "eos_id")
add("Collator-pad_id=-1", lambda: make(pad_id=-1), ValueError, "pad_id")
add("Collator-pad_id>int32", lambda: make(pad_id=2**31), ValueError, "pad_id")
add("Collator-seed=-1", lambda: make(seed=-1), ValueError, "seed")
add("Collator-seed=2**64", lambda: make(seed=2**64), ValueError, "seed")
add("Collator-seed=float", lambda: make(seed=0.0), TypeError, "seed")
add("Collator-seed=None", lambda: make(seed=None), TypeError, "seed")
add("Collator-mixture=str", lambda: make(mixture="t5"), TypeError, "mixture")
add("Collator-mixture=empty", lambda: make(mixture=[]), ValueError, "mixture")
add("Collator-sentinels>int32", lambda: make(sentinels=ul2.Sentinels.t5(2**32)), ValueError, "sentinels")
add(
    "Collator-overflow",
    lambda: make(mixture=ul2.presets.ul2()),
    ul2.SentinelOverflowError,
    "sentinels",
    "100",
    "noise spans",
)
add(
    "Collator-overflow-few-sentinels",
    lambda: make(sentinels=ul2.Sentinels.t5(VOCAB, 10)),
    ul2.SentinelOverflowError,
    "sentinels",
    "10",
    "28",
)
add(
    "Collator-r>.5-small-mu",
    lambda: make(mixture=[(ul2.SpanCorruption(1.0, 0.9), 1.0)]),
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
    lambda: call([GOOD_ROWS[0], np.arange(2, 700, dtype=np.int32)], long_rows="error"),
    ValueError,
    "rows[1]",
    "raw_length=568",
)
add(
    "call-row-too-long-dense",
    lambda: call(np.arange(2, 2 + 2 * 569, dtype=np.int32).reshape(2, 569), long_rows="error"),
    ValueError,
    "rows[0]",
    "raw_length=568",
)
add(
    "call-row-too-long-targets",  # targets_length explicitly smaller than some rows need
    lambda: call(
        [np.arange(2, 300, dtype=np.int32), np.arange(2, 570, dtype=np.int32)],
        targets_length=100,
        long_rows="error",
    ),
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

# ---- Collator: decoder-only, packing and ragged-row edges ----------------------------------------
for v in (0, 1, -1):
    add(
        f"Collator-sequence_length={v}",
        lambda v=v: make(sequence_length=v),
        ValueError,
        "sequence_length",
    )
add("Collator-sequence_length=float", lambda: make(sequence_length=1.5e3), TypeError, "sequence_length")
add(
    "Collator-both-budgets",
    lambda: make(inputs_length=512, sequence_length=1024),
    ValueError,
    "sequence_length",
)
add(
    "Collator-format=hf-decoder-budget",
    lambda: make(sequence_length=512, format="hf"),
    ValueError,
    "format",
)
add("Collator-format=decoder-enc-budget", lambda: make(format="decoder"), ValueError, "format")
add("Collator-pack=int", lambda: make(pack=1), TypeError, "pack")
add("Collator-pack=str", lambda: make(pack="True"), TypeError, "pack")
add(
    "Collator-bidirectional_mask=None",
    lambda: make(bidirectional_mask=None),
    TypeError,
    "bidirectional_mask",
)
add(
    "Collator-decoder-overflow",
    lambda: make(mixture=ul2.presets.ul2(), sequence_length=1024),
    ul2.SentinelOverflowError,
    "sentinels",
)
add("call-ragged-None-item", lambda: make()([LONG_ROW[:10], None]), TypeError, "rows[1]")
add("call-ragged-float-list", lambda: make()([[2, 3], [4.5]]), TypeError, "rows[1]")
add("call-ragged-str-item", lambda: make()(["abc"]), TypeError, "rows[0]")
add("call-keys-2**64", lambda: make()(LONG_ROW[None, :100], keys=[2**64]), (TypeError, ValueError), "keys")
add("call-keys-float-array", lambda: make()(LONG_ROW[None, :100], keys=np.array([1.0])), TypeError, "keys")
add("call-keys-None-item", lambda: make()(LONG_ROW[None, :100], keys=[None]), TypeError, "keys")
add(
    "call-packed-row-too-long",
    lambda: make(pack=True, long_rows="error")([LONG_ROW[:100], LONG_ROW[:600]]),
    ValueError,
    "rows[1]",
)
add(
    "call-decoder-row-too-long",
    lambda: make(sequence_length=256, long_rows="error")([LONG_ROW[:100], LONG_ROW[:1000]]),
    ValueError,
    "rows[1]",
)
add(
    "call-decoder-packed-collision",
    lambda: make(sequence_length=256, pack=True)([LONG_ROW[:10], np.array([7, VOCAB - 1], np.int32)]),
    ValueError,
    "rows[1]",
)
add("call-decoder-empty-batch", lambda: make(sequence_length=256)([]), ValueError, "rows")
add("call-packed-empty-batch", lambda: make(pack=True)(np.zeros((0, 10), np.int32)), ValueError, "rows")


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_input(case: testing.BadInput) -> None:
    case.check()


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
    c = make()
    c(GOOD_ROWS)
    assert c.next_key == 1
    good = make()(GOOD_ROWS, keys=[1])
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
        make()(rows)
    assert str(VOCAB + 5) in str(info.value)


def _tagged(mixture: ul2.Mixture) -> ul2.Mixture:
    """The same denoisers, each with its own one-token prompt (so an output row names its denoiser)."""
    return ul2.Mixture(
        [(dataclasses.replace(d, prefix=(100 + i,)), r) for i, (d, r) in enumerate(mixture.entries)]
    )


@pytest.mark.parametrize("name", ["t5", "ul2", "ul2r"])
@pytest.mark.parametrize("eos", [True, False])
def test_rows_of_length_0_1_2_are_accepted_and_round_trip(name, eos):
    m = _tagged(getattr(ul2.presets, name)())
    s = ul2.Sentinels.t5(VOCAB, 200)
    c = ul2.Collator(m, sentinels=s, inputs_length=512, eos_id=1 if eos else None)
    rows = [np.array([], np.int32), np.array([7], np.int32), np.array([8, 9], np.int32)] * 8
    keys = np.arange(len(rows)) * 7919
    out = c(rows, keys=keys)
    for i, row in enumerate(rows):
        alone = c([row], keys=[keys[i]])
        for name in out:
            np.testing.assert_array_equal(alone[name][0], out[name][i], err_msg=name)
        inputs = out["input_ids"][i, : int(out["attention_mask"][i].sum())]
        targets = out["labels"][i, : int(out["decoder_attention_mask"][i].sum())]
        d = m.denoisers[inputs[0] - 100]
        testing.check_example(row, inputs, targets, d, sentinels=s, eos_id=1 if eos else None)


def test_zero_width_dense_rows_are_empty_rows_or_a_clear_error():
    """A [B, 0] int array is B empty rows: the same as a list of B empty arrays, or a
    ValueError naming ``rows``; never ``RuntimeError('internal error ...')``."""
    ragged = [np.zeros(0, np.int32)] * 3
    for pack in (False, True):
        c = make(pack=pack)
        want = c(ragged, keys=[0, 1, 2])
        try:
            got = c(np.zeros((3, 0), np.int32), keys=[0, 1, 2])
        except ValueError as e:
            assert "rows" in str(e)
            continue
        assert set(got) == set(want)
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
