"""Rows as Python lists of ints (a ``datasets.Dataset``'s features in its default format): the
collator reads a batch of them in one pass, with the bytes and errors of per-row NumPy arrays."""

from __future__ import annotations

import numpy as np
import pytest
import ul2
from ul2.sources import ByteTokenizer, stdlib_stream

TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")


def collator(**kw: object) -> ul2.Collator:
    return ul2.Collator(ul2.presets.ul2(), sentinels=SENTINELS, inputs_length=64, targets_length=64, **kw)  # type: ignore[arg-type]


def same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for n in a:
        assert a[n].dtype == b[n].dtype and a[n].tobytes() == b[n].tobytes(), n


@pytest.mark.parametrize("pack", [False, True])
def test_int_lists_give_the_bytes_of_per_row_arrays(pack: bool) -> None:
    tokens = stdlib_stream(TOK, max_bytes=20_000)
    lengths = np.random.default_rng(1).integers(1, 60, 40)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    lists = [tokens[s : s + n].tolist() for s, n in zip(starts, lengths, strict=True)]
    keys = np.arange(40)
    same(collator(pack=pack)(lists, keys), collator(pack=pack)([np.asarray(r) for r in lists], keys))
    assert collator(pack=pack)(lists, keys)["input_ids"].base is not None


def test_lists_that_are_not_plain_ints_take_the_per_row_path() -> None:
    c = collator()
    base = [[5, 6, 7, 8, 9]] * 3
    for odd in ([5, np.int64(6), 7], [5, True, 7], (5, 6, 7), np.arange(5, 8)):
        rows = [*base, odd]
        same(c(rows, np.arange(4)), c([np.asarray(r) for r in rows], np.arange(4)))
    with pytest.raises(TypeError, match=r"rows\[1\]"):
        c([[5, 6], [True, False]])  # a bool row, as NumPy reads it
    with pytest.raises(TypeError, match=r"rows\[1\]"):
        c([[5, 6], []])  # an empty list is float64 to NumPy
    with pytest.raises(TypeError, match=r"rows\[0\]"):
        c([[5, 2**70]])
    with pytest.raises(TypeError, match=r"rows\[1\]"):
        c([[5, 6], [7, "8"]])
    with pytest.raises(ValueError, match="rows"):
        c([[5, -6]])  # a negative id, refused by the core as from an array
    with pytest.raises(ValueError, match="empty batch"):
        c([])
