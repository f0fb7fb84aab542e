"""``fields=`` (SPEC §5, lean outputs): a collator, dataset or stream asked for some of its
format's outputs gives exactly those arrays of the full output, computed in the core (the
others are never allocated); unknown names are refused with the valid ones listed."""

from __future__ import annotations

import functools
import pickle
from typing import Any

import numpy as np
import pytest
import ul2
from hypothesis import given
from hypothesis import strategies as st

SENTINELS = ul2.Sentinels.t5(1000, 100)
MIXTURE = ul2.Mixture(
    [
        (ul2.SpanCorruption(3.0, 0.15, prefix=(5,)), 1.0),
        (ul2.SpanCorruption(8.0, 0.5, prefix=(6,)), 1.0),
        (ul2.PrefixLM(0.5, prefix=(7,)), 1.0),
    ]
)
CASES = [
    (fmt, pack, bidi)
    for fmt in ("hf", "seqio", "decoder", "seqio_decoder")
    for pack in (False, True)
    for bidi in ((False, True) if fmt == "decoder" else (False,))
]
rng = np.random.default_rng(0)
ROWS = [rng.integers(2, 800, size=n, dtype=np.int32) for n in (20, 50, 33, 5, 48, 41, 12, 30)]
KEYS = np.arange(len(ROWS), dtype=np.uint64)


def budget(fmt: str) -> dict[str, int]:
    return {"sequence_length": 128} if fmt in ("decoder", "seqio_decoder") else {"inputs_length": 64}


def collator(fmt: str, pack: bool, bidi: bool, **kw: Any) -> ul2.Collator:
    return ul2.Collator(
        MIXTURE, sentinels=SENTINELS, format=fmt, pack=pack, bidirectional_mask=bidi, **budget(fmt), **kw
    )


@functools.cache
def full(fmt: str, pack: bool, bidi: bool) -> dict[str, np.ndarray]:
    return collator(fmt, pack, bidi)(ROWS, KEYS)


@st.composite
def selections(draw: st.DrawFn) -> tuple[tuple[str, bool, bool], list[str]]:
    case = draw(st.sampled_from(CASES))
    names = list(full(*case))
    return case, draw(st.lists(st.sampled_from(names), min_size=1, max_size=len(names)))


@given(selections(), st.sampled_from([np.int32, np.int64]))
def test_a_selection_is_the_full_outputs_arrays_for_those_names(
    selection: tuple[tuple[str, bool, bool], list[str]], dtype: Any
) -> None:
    case, names = selection
    out = collator(*case, fields=iter(names), dtype=dtype)(ROWS, KEYS)
    want = full(*case)
    assert list(out) == [n for n in want if n in names]  # the format's order, nothing else
    for name in names:
        assert out[name].dtype == dtype
        np.testing.assert_array_equal(out[name], want[name], err_msg=name)


@pytest.mark.parametrize("case", CASES)
def test_every_name_of_the_full_output_is_a_field(case: tuple[str, bool, bool]) -> None:
    want = full(*case)
    out = collator(*case, fields=list(want))(ROWS, KEYS)
    assert list(out) == list(want)
    for name in want:
        np.testing.assert_array_equal(out[name], want[name], err_msg=name)


@pytest.mark.parametrize("pack", [False, True])
def test_dataset_and_stream_items_keep_denoiser(pack: bool) -> None:
    tokens = rng.integers(2, 800, size=3000, dtype=np.int32)
    fields = ("input_ids", "labels")
    kw: dict[str, Any] = {"sentinels": SENTINELS, "inputs_length": 64, "pack": pack}
    lean = ul2.DenoisingDataset(tokens, MIXTURE, fields=fields, **kw)
    whole = ul2.DenoisingDataset(tokens, MIXTURE, **kw)
    keys = list(range(min(6, len(whole))))
    got, want = lean.batch(keys), whole.batch(keys)
    assert list(got) == ["input_ids", "labels", "denoiser"]
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    assert list(lean[1]) == list(got)
    again = pickle.loads(pickle.dumps(lean))
    assert again.options["fields"] == fields
    assert list(again.batch(keys)) == list(got)

    stream = ul2.DenoisingStream(iter([tokens]), MIXTURE, batch_size=4, fields=fields, **kw)
    first = next(iter(stream))
    assert list(first) == ["input_ids", "labels", "denoiser"]
    np.testing.assert_array_equal(first["labels"], whole.batch(list(range(4)))["labels"])


def test_names_outside_the_format_are_a_value_error_listing_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"fields=\"segment_ids\".*\"decoder_attention_mask\"") as e:
        collator("hf", False, False, fields=("input_ids", "segment_ids"))
    assert '"cu_seqlens"' not in str(e.value)
    collator("hf", True, False, fields=("input_ids", "segment_ids", "cu_seqlens"))
    with pytest.raises(ValueError, match=r"fields=.*pack=True.*\"cu_seqlens\""):
        collator("hf", True, False, fields=("prefix_lengths",))
    with pytest.raises(ValueError, match=r"fields=\"denoiser\""):
        collator("decoder", False, False, fields=("denoiser",))
    with pytest.raises(ValueError, match=r"fields=\(\): name at least one field"):
        collator("seqio", False, False, fields=())
    with pytest.raises(TypeError, match=r"fields='labels': must be an iterable of output names"):
        collator("hf", False, False, fields="labels")
    with pytest.raises(TypeError, match=r"fields=.*must be a sequence of str"):
        collator("hf", False, False, fields=(1, 2))


def test_a_collator_keeps_its_fields_across_epochs_and_pickling() -> None:
    c = collator("hf", False, False, fields=(n for n in ("input_ids", "labels")))
    assert c.options["fields"] == ("input_ids", "labels")
    c.set_epoch(3)
    assert list(c(ROWS, KEYS)) == ["input_ids", "labels"]
    assert list(pickle.loads(pickle.dumps(c))(ROWS, KEYS)) == ["input_ids", "labels"]
