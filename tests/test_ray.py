"""ul2.ray on a local Ray instance (ray.init(num_cpus=2)): token rows with ids in, denoised rows out,
written as Parquet, equal to the NumPy collator with the ids as keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

import ul2  # noqa: E402
import ul2.ray  # noqa: E402
from ul2.sources import ByteTokenizer, stdlib_stream  # noqa: E402

TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")
MIXTURE = ul2.presets.ul2()
# Ray Data warns about its own deprecated settings whenever its context is created.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

ROW = min(r.raw_length for r in ul2.plan(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64))


@pytest.fixture(scope="module")
def local_ray():  # type: ignore[no-untyped-def]
    # No skip if it cannot start: `make test` installs Ray, so a failure to start is a failure.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def table() -> pa.Table:
    tokens = stdlib_stream(TOK, max_bytes=60_000)
    lengths = np.random.default_rng(1).integers(ROW // 3, ROW + 1, 300)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    rows = [tokens[s : s + n].tolist() for s, n in zip(starts, lengths, strict=True)]
    ids = np.random.default_rng(2).permutation(10_000)[:300].astype(np.int64)  # stable ids, not positions
    return pa.table({"id": ids, "tokens": pa.array(rows, type=pa.list_(pa.int32()))})


def expected(collator: ul2.Collator, table: pa.Table) -> dict:
    rows = [np.asarray(r, dtype=np.int32) for r in table.column("tokens").to_pylist()]
    return collator(rows, table.column("id").to_numpy().astype(np.uint64))


def read_sorted(path: Path) -> pa.Table:
    out = pq.read_table(path)
    return out.take(np.argsort(out.column("id").to_numpy()))


def test_denoised_rows_written_as_parquet_are_the_collators(
    local_ray, table: pa.Table, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    collator = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
    ref = expected(collator, table.take(np.argsort(table.column("id").to_numpy())))
    outputs = []
    for i, (blocks, batch_size) in enumerate(((3, 64), (5, 17))):
        rows = ray.data.from_arrow(table).repartition(blocks)
        ul2.ray.denoise(rows, collator, batch_size=batch_size).write_parquet(str(tmp_path / str(i)))
        out = read_sorted(tmp_path / str(i))
        assert out.num_rows == table.num_rows
        assert out.column_names == ["id", *ref]
        for name, a in ref.items():
            assert out.schema.field(name).type == pa.list_(pa.int32(), a.shape[1])
            got = np.asarray(out.column(name).combine_chunks().flatten()).reshape(a.shape)
            assert got.dtype == a.dtype and got.tobytes() == a.tobytes(), name
        outputs.append(out)
    assert outputs[0].equals(outputs[1])  # however Ray splits and batches the rows


def test_packed_rows_drop_ids_and_flat_fields(local_ray, table: pa.Table) -> None:  # type: ignore[no-untyped-def]
    collator = ul2.Collator(MIXTURE, sentinels=SENTINELS, sequence_length=256, pack=True)
    out = ul2.ray.denoise(ray.data.from_arrow(table).repartition(1), collator, batch_size=300).to_arrow_refs()
    result = pa.concat_tables(ray.get(out))
    ref = expected(collator, table)
    assert result.column_names == [n for n in ref if n != "cu_seqlens"]
    assert result.num_rows == len(ref["input_ids"]) < table.num_rows
    got = np.asarray(result.column("segment_ids").combine_chunks().flatten()).reshape(
        ref["segment_ids"].shape
    )
    assert got.tobytes() == ref["segment_ids"].tobytes()


def test_a_missing_column_is_named(local_ray, table: pa.Table) -> None:  # type: ignore[no-untyped-def]
    collator = ul2.Collator(MIXTURE, sentinels=SENTINELS, inputs_length=64, targets_length=64)
    with pytest.raises(Exception, match="id_column='row'"):
        ul2.ray.denoise(ray.data.from_arrow(table), collator, id_column="row").materialize()
    with pytest.raises(TypeError, match="Collator"):
        ul2.ray.denoise(ray.data.from_arrow(table), "collator")  # type: ignore[arg-type]
