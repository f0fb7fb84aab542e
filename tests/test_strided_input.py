"""Strided views, Fortran order and misaligned memory are valid input (SPEC §8.7): every entry
point reads them in place through their strides and gives the bytes of the contiguous copy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import ul2

S = ul2.Sentinels.t5(32100, count=200)
T5 = ul2.SpanCorruption(3.0, 0.15)
ROWS = np.random.default_rng(0).integers(2, 31000, size=(16, 700), dtype=np.int32)


def misaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a`` one byte past an aligned address (not aligned)."""
    buf = bytearray(a.nbytes + 1)
    out = np.ndarray(a.shape, a.dtype, buffer=buf, offset=1)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


# Each gives (the view, rows that equal it as a fresh contiguous array).
VIEWS_2D = {
    "columns rows[:, :568] of a wider array": lambda: ROWS[:, :568],
    "every other row rows[::2, :568]": lambda: ROWS[::2, :568],
    "every other column rows[:, ::2][:, :300]": lambda: ROWS[:, ::2][:, :300],
    "Fortran order": lambda: np.asfortranarray(ROWS[:, :568]),
    "reversed rows and columns": lambda: ROWS[::-1, 567::-1],
    "transposed": lambda: np.ascontiguousarray(ROWS[:, :568].T).T,
    "misaligned, contiguous": lambda: misaligned(ROWS[:, :568]),
    "uint16 columns": lambda: ROWS.astype(np.uint16)[:, 100:668],
    "int64 every third column": lambda: ROWS.astype(np.int64)[:, ::3][:, :200],
}


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("view", VIEWS_2D.values(), ids=VIEWS_2D.keys())
def test_collator_reads_2d_views_in_place(view, pack):
    rows = view()
    assert not (rows.flags.c_contiguous and rows.flags.aligned) or rows.base is not None
    keys = np.arange(len(rows))
    c = ul2.Collator(T5, sentinels=S, inputs_length=512, targets_length=114, pack=pack)
    same(c(np.ascontiguousarray(rows), keys=keys), c(rows, keys=keys))
    short = rows[:, :200]
    c = ul2.Collator(ul2.presets.ul2(), sentinels=S, inputs_length=512, pack=pack)
    same(c(np.ascontiguousarray(short), keys=keys), c(short, keys=keys))


@pytest.mark.parametrize("view", VIEWS_2D.values(), ids=VIEWS_2D.keys())
def test_collator_reads_lists_of_strided_rows(view):
    rows = view()
    c = ul2.Collator(T5, sentinels=S, inputs_length=512, targets_length=114)
    keys = np.arange(len(rows))
    want = c(np.ascontiguousarray(rows), keys=keys)
    same(want, c(list(rows), keys=keys))
    # A list mixing contiguous rows and strided ones.
    mixed = [np.ascontiguousarray(r) if i % 2 else r for i, r in enumerate(rows)]
    same(want, c(mixed, keys=keys))


def test_ragged_rows_of_different_strides_and_lengths():
    rows = [ROWS[0, :100], ROWS[1, ::2][:200], ROWS[2, ::-3][:50], misaligned(ROWS[3, :300])]
    c = ul2.Collator(T5, sentinels=S, inputs_length=512)
    keys = np.arange(len(rows))
    same(c([np.ascontiguousarray(r) for r in rows], keys=keys), c(rows, keys=keys))


def test_decoder_format_reads_strided_rows():
    c = ul2.Collator(ul2.presets.ul2(), sentinels=S, sequence_length=1024)
    rows = ROWS[::3, :400]
    keys = np.arange(len(rows))
    same(c(np.ascontiguousarray(rows), keys=keys), c(rows, keys=keys))


def test_strided_keys_and_doc_offsets():
    c = ul2.Collator(T5, sentinels=S, inputs_length=512)
    rows = np.ascontiguousarray(ROWS[:4, :568])
    same(c(rows, keys=np.arange(8)[::2]), c(rows, keys=np.arange(0, 8, 2)))
    tokens = ROWS.reshape(-1)
    offsets = np.array([0, 0, 1000, 0, 5000, 0, tokens.size, 0])
    a = ul2.DenoisingDataset(tokens, T5, sentinels=S, inputs_length=512, doc_offsets=offsets[::2])
    b = ul2.DenoisingDataset(tokens, T5, sentinels=S, inputs_length=512, doc_offsets=offsets[::2].copy())
    assert len(a) == len(b)
    same(a.batch(np.arange(len(a))), b.batch(np.arange(len(b))))
    same(a.batch(np.arange(len(a))[::-1][::2]), b.batch(np.arange(len(b))[::-1][::2].copy()))


TOKEN_VIEWS = {
    "t[::3]": lambda t: t[::3],
    "t[::-1]": lambda t: t[::-1],
    "t[7:][::2]": lambda t: t[7:][::2],
    "misaligned": misaligned,
    "a column of a 2-D array": lambda t: t[: t.size // 4 * 4].reshape(-1, 4)[:, 1],
}


@pytest.mark.parametrize("documents", ["concat", "respect"])
@pytest.mark.parametrize("view", TOKEN_VIEWS.values(), ids=TOKEN_VIEWS.keys())
def test_dataset_reads_strided_tokens(view, documents):
    tokens = view(ROWS.reshape(-1))
    kw = dict(sentinels=S, inputs_length=512, documents=documents)
    if documents == "concat":
        kw["separator_id"] = 1
    n = tokens.size
    offsets = [0, n // 3, n // 2, n]
    a = ul2.DenoisingDataset(tokens, ul2.presets.ul2(), doc_offsets=offsets, **kw)
    b = ul2.DenoisingDataset(np.ascontiguousarray(tokens), ul2.presets.ul2(), doc_offsets=offsets, **kw)
    assert (a.num_samples, a.tail, a.stream_length) == (b.num_samples, b.tail, b.stream_length)
    same(a.batch(np.arange(len(a))), b.batch(np.arange(len(b))))


def test_apply_mask_reads_strided_tokens_and_masks():
    mask = ul2.noise_mask(100, 0.15, seed=3)
    for tokens in (ROWS[0, ::2][:100], ROWS[0, ::-1][:100], misaligned(ROWS[0, :100])):
        want = ul2.apply_mask(np.ascontiguousarray(tokens), mask, S, eos_id=1)
        got = ul2.apply_mask(tokens, np.repeat(mask, 3)[::3], S, eos_id=1)
        for w, g in zip(want, got, strict=True):
            np.testing.assert_array_equal(w, g)


def _rss_anon() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="RssAnon is Linux's")
def test_strided_memmap_is_not_copied(tmp_path):
    """A dataset over every other token of a 256 MB memmap keeps its heap flat: the view
    is read in place, not made contiguous (a copy would add 128 MB)."""
    path = tmp_path / "tokens.bin"
    n = 64 << 20
    np.arange(n, dtype=np.int32).__mod__(30000).astype(np.int32).tofile(path)
    mm = np.memmap(path, dtype=np.int32, mode="r")
    before = _rss_anon()
    ds = ul2.DenoisingDataset(mm[::2], T5, sentinels=S, inputs_length=512)
    for start in range(0, len(ds), len(ds) // 8):
        ds.batch(np.arange(start, min(start + 64, len(ds))))
    grown = _rss_anon() - before
    assert grown < 48 << 20, f"heap grew {grown >> 20} MB"
    assert ds.stream_length == n // 2
