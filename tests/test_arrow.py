"""ul2.arrow: Arrow list columns (and Hugging Face datasets) read in place, against the NumPy path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

import ul2  # noqa: E402
import ul2.arrow  # noqa: E402
from ul2.sources import ByteTokenizer, stdlib_stream  # noqa: E402

TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")
MIXTURE = ul2.presets.ul2()
ROW = min(r.raw_length for r in ul2.plan(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64))


def token_rows(n: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Rows of the built-in corpus, of lengths up to ROW (so each fits any denoiser)."""
    tokens = stdlib_stream(TOK, max_bytes=40_000)
    lengths = np.random.default_rng(seed).integers(1, ROW + 1, n)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return [tokens[s : s + k] for s, k in zip(starts, lengths, strict=True)]


def list_array(rows: list[np.ndarray], value_type: object = None, large: bool = False) -> pa.Array:
    value_type = value_type or pa.int32()
    t = pa.large_list(value_type) if large else pa.list_(value_type)
    return pa.array([r.tolist() for r in rows], type=t)


def values_buffer(arr: pa.Array) -> np.ndarray:
    """The Arrow values buffer itself, viewed as bytes (no copy)."""
    return np.frombuffer(arr.buffers()[3], dtype=np.uint8)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[n].dtype == b[n].dtype and a[n].tobytes() == b[n].tobytes() for n in a
    )


@pytest.mark.parametrize(
    ("value_type", "large", "dtype"),
    [
        (pa.int32(), False, np.int32),
        (pa.int64(), True, np.int64),
        (pa.uint16(), False, np.uint16),
        (pa.uint32(), True, np.uint32),
    ],
)
def test_values_and_offsets_are_views_of_the_arrow_buffers(
    value_type: object, large: bool, dtype: type
) -> None:
    rows = token_rows()
    arr = list_array(rows, value_type, large)
    values, offsets = ul2.arrow.values_and_offsets(arr)
    assert values.dtype == dtype and offsets.dtype == (np.int64 if large else np.int32)
    assert np.shares_memory(values, values_buffer(arr))
    assert values.ctypes.data == arr.buffers()[3].address
    assert offsets.ctypes.data == arr.buffers()[1].address
    assert np.array_equal(values, np.concatenate(rows))
    assert offsets[0] == 0 and offsets[-1] == len(values) and len(offsets) == len(rows) + 1


def test_a_sliced_column_reads_its_own_rows() -> None:
    rows = token_rows()
    arr = list_array(rows).slice(5, 10)
    values, offsets = ul2.arrow.values_and_offsets(arr)
    assert np.shares_memory(values, values_buffer(arr))
    assert [values[offsets[i] : offsets[i + 1]].tolist() for i in range(10)] == arr.to_pylist()
    assert [r.tolist() for r in ul2.arrow.rows(arr)] == arr.to_pylist()


def test_rows_of_a_chunked_column_are_views_into_each_chunk() -> None:
    rows = token_rows(60)
    chunks = [list_array(rows[:25]), list_array(rows[25:])]
    col = pa.chunked_array(chunks)
    views = ul2.arrow.rows(col)
    assert [v.tolist() for v in views] == col.to_pylist()
    assert all(np.shares_memory(v, values_buffer(chunks[0])) for v in views[:25] if len(v))
    assert all(np.shares_memory(v, values_buffer(chunks[1])) for v in views[25:] if len(v))
    collator = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
    keys = np.arange(100, 160)
    assert same(collator(views, keys), collator([r.copy() for r in rows], keys))


def test_dataset_reads_the_values_buffer_in_place() -> None:
    rows = token_rows(80)
    arr = list_array(rows)
    kwargs = dict(sentinels=SENTINELS, inputs_length=64, targets_length=64)
    for documents in ("concat", "respect"):
        ds = ul2.arrow.dataset(arr, MIXTURE, documents=documents, **kwargs)
        assert np.shares_memory(ds.tokens, values_buffer(arr))
        copy = ul2.DenoisingDataset(
            np.concatenate(rows),
            MIXTURE,
            doc_offsets=np.cumsum([0] + [len(r) for r in rows]),
            documents=documents,
            **kwargs,
        )
        assert len(ds) == len(copy)
        keys = np.arange(len(ds))
        assert same(ds.batch(keys), copy.batch(keys))
    bounds = set(np.cumsum([len(r) for r in rows]).tolist())
    respect = ul2.arrow.dataset(arr, MIXTURE, documents="respect", **kwargs)
    for k in range(len(respect)):  # no sample crosses a row boundary
        start, stop = respect.span(k)
        assert not any(start < b < stop for b in bounds)
    with pytest.raises(TypeError, match="doc_offsets"):
        ul2.arrow.dataset(arr, MIXTURE, doc_offsets=[0], **kwargs)


def test_a_memory_mapped_arrow_file_is_not_copied(tmp_path: Path) -> None:
    rows = token_rows(200)
    path = tmp_path / "tokens.arrow"
    table = pa.table({"input_ids": list_array(rows)})
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    del table
    before = pa.total_allocated_bytes()
    with pa.memory_map(str(path)) as source:
        mapped = pa.ipc.open_file(source).read_all()
        ds = ul2.arrow.dataset(mapped, MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
        # Nothing was allocated for the tokens: they are the file's pages.
        assert pa.total_allocated_bytes() == before
        chunk = mapped.column("input_ids").chunk(0)
        assert np.shares_memory(ds.tokens, values_buffer(chunk))
        assert ds.batch([0, 1])["input_ids"].shape == (2, 64)
        del ds, mapped, chunk


def test_several_chunks_need_an_explicit_copy() -> None:
    rows = token_rows(30)
    col = pa.chunked_array([list_array(rows[:10]), list_array(rows[10:])])
    kwargs = dict(sentinels=SENTINELS, inputs_length=64, targets_length=64)
    with pytest.raises(ValueError, match="2 chunks"):
        ul2.arrow.dataset(col, MIXTURE, **kwargs)
    ds = ul2.arrow.dataset(col, MIXTURE, combine_chunks=True, **kwargs)
    one = ul2.arrow.dataset(list_array(rows), MIXTURE, **kwargs)
    assert same(ds.batch(np.arange(len(ds))), one.batch(np.arange(len(one))))


def test_unsupported_columns_are_refused() -> None:
    with pytest.raises(TypeError, match="token type float"):
        ul2.arrow.rows(pa.array([[1.0, 2.0]], type=pa.list_(pa.float32())))
    with pytest.raises(TypeError, match="list or large_list"):
        ul2.arrow.rows(pa.array([1, 2, 3]))
    with pytest.raises(ValueError, match="nulls"):
        ul2.arrow.rows(pa.array([[5, 6], None], type=pa.list_(pa.int32())))
    with pytest.raises(TypeError, match="column"):
        ul2.arrow.rows([[1, 2]])


def test_hf_dataset_column_is_read_in_place_and_map_is_the_numpy_path() -> None:
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    rows = token_rows(50)
    hf = datasets.Dataset.from_dict({"input_ids": [r.tolist() for r in rows], "text": ["x"] * 50})
    col = ul2.arrow.column_of(hf)
    chunk = col.chunk(0)
    ds = ul2.arrow.dataset(hf, MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
    assert np.shares_memory(ds.tokens, values_buffer(chunk))

    collator = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
    expected = collator([r.astype(np.int32) for r in rows], np.arange(50))
    for fmt, batch_size in (("arrow", 16), ("arrow", 50), (None, 7)):
        source = hf.with_format(fmt) if fmt else hf
        out = source.map(
            ul2.arrow.Denoise(collator),
            batched=True,
            batch_size=batch_size,
            with_indices=True,
            remove_columns=hf.column_names,
        )
        assert out.column_names == list(expected)
        table = out.data.table
        got = {n: np.asarray(table.column(n).to_pylist(), dtype=np.int32) for n in expected}
        assert same(got, expected), (fmt, batch_size)
    with pytest.raises(ValueError, match="flatten_indices"):
        ul2.arrow.column_of(hf.shuffle(seed=0))


def test_batch_rows_is_one_2d_view_for_rows_of_one_length_and_views_otherwise() -> None:
    equal = list_array([np.arange(3, 3 + ROW, dtype=np.int32) + i for i in range(6)])
    dense = ul2.arrow.batch_rows(equal)
    assert isinstance(dense, np.ndarray) and dense.shape == (6, ROW)
    assert np.shares_memory(dense, values_buffer(equal))
    sliced = equal.slice(2, 3)  # offsets that do not start at 0
    assert np.array_equal(ul2.arrow.batch_rows(sliced), dense[2:5])
    ragged = list_array(token_rows(7))
    rows = ul2.arrow.batch_rows(ragged)
    assert isinstance(rows, list) and [len(r) for r in rows] == [len(r) for r in token_rows(7)]
    assert all(np.shares_memory(r, values_buffer(ragged)) for r in rows)
    chunked = pa.chunked_array([equal, equal])  # two buffers: one row list over both
    assert isinstance(ul2.arrow.batch_rows(chunked), list) and len(ul2.arrow.batch_rows(chunked)) == 12


@pytest.mark.parametrize("lengths", ["equal", "ragged"])
def test_denoise_gives_the_numpy_paths_bytes_in_every_format(lengths: str) -> None:
    """Arrow batches (2-D view or row views) and Python lists (read in one pass) give the bytes
    of the collator on per-row NumPy arrays."""
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    stream = stdlib_stream(TOK, max_bytes=40_000)
    rows = token_rows(30) if lengths == "ragged" else [stream[i * ROW : (i + 1) * ROW] for i in range(30)]
    hf = datasets.Dataset.from_dict({"input_ids": [r.tolist() for r in rows]})
    collator = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
    schemas = []  # an Arrow batch comes back as a table over the collator's buffers, of the same type
    for fmt, dtype in (("arrow", np.int32), (None, np.int64)):
        expected = collator([r.astype(dtype) for r in rows], np.arange(30))
        source = hf.with_format(fmt) if fmt else hf
        out = source.map(ul2.arrow.Denoise(collator), batched=True, batch_size=10, with_indices=True)
        table = out.data.table
        got = {n: np.asarray(table.column(n).to_pylist(), dtype=np.int32) for n in expected}
        assert same(got, expected), fmt
        schemas.append(table.schema)
    assert schemas[0] == schemas[1]
    assert isinstance(ul2.arrow.Denoise(collator)(pa.table({"input_ids": list_array(rows)})), pa.Table)
