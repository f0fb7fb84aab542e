"""ul2.grain: the data source, the batch transform and the host-sharded loader, against the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

grain = pytest.importorskip("grain")

import ul2  # noqa: E402
import ul2.grain  # noqa: E402
from ul2.sources import ByteTokenizer, stdlib_stream  # noqa: E402

TOK = ByteTokenizer()
SEQIO = {"encoder_input_tokens", "decoder_target_tokens", "decoder_input_tokens", "decoder_loss_weights"}


@pytest.fixture(scope="module")
def ds() -> ul2.DenoisingDataset:
    return ul2.DenoisingDataset(
        stdlib_stream(TOK, max_bytes=40_000),
        ul2.presets.ul2(),
        sentinels=TOK.sentinels(on_overflow="cap"),
        inputs_length=64,
        targets_length=64,
        format="seqio",
    )


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[n].dtype == b[n].dtype and a[n].shape == b[n].shape and a[n].tobytes() == b[n].tobytes() for n in a
    )


def without_denoiser(batch: dict) -> dict:
    return {n: a for n, a in batch.items() if n != "denoiser"}


def test_data_source_records_are_the_examples(ds: ul2.DenoisingDataset) -> None:
    source = ul2.grain.DataSource(ds)
    assert isinstance(source, grain.sources.RandomAccessDataSource)
    assert len(source) == len(ds)
    assert set(source[3]) == SEQIO
    assert same(source[3], without_denoiser(ds[3]))
    assert same(ul2.grain.DataSource(ds, keep_denoiser=True)[3], ds[3])
    assert "DenoisingDataset" in repr(source)  # grain checkpoints compare reprs


def test_grain_batch_of_the_source_is_the_rust_batch(ds: ul2.DenoisingDataset) -> None:
    stacked = grain.MapDataset.source(ul2.grain.DataSource(ds)).batch(8)
    assert same(stacked[1], without_denoiser(ds.batch(np.arange(8, 16))))


def test_denoise_maps_an_index_batch_to_one_batch(ds: ul2.DenoisingDataset) -> None:
    transform = ul2.grain.Denoise(ds)
    assert isinstance(transform, grain.transforms.Map)
    batch = transform.map(np.array([7, 1, 30]))
    assert set(batch) == SEQIO
    assert all(a.shape == (3, 64) and a.dtype == np.int32 for a in batch.values())
    assert same(batch, without_denoiser(ds.batch([7, 1, 30])))
    assert same(transform.map(7), without_denoiser(ds[7]))
    via_dataset = grain.MapDataset.range(len(ds)).batch(4).map(ul2.grain.Denoise(ds, keep_denoiser=True))
    assert same(via_dataset[2], ds.batch([8, 9, 10, 11]))
    with pytest.raises(TypeError, match="DenoisingDataset"):
        ul2.grain.Denoise(np.zeros(3))  # type: ignore[arg-type]


def index_batches(
    n: int, batch_size: int, shard: grain.sharding.ShardOptions, **sampler: object
) -> list[list[int]]:
    """What grain itself gives each host: index batches of a plain RangeDataSource pipeline."""
    loader = grain.DataLoader(
        data_source=grain.sources.RangeDataSource(0, n, 1),
        sampler=grain.samplers.IndexSampler(n, **sampler),
        operations=[grain.transforms.Batch(batch_size=batch_size, drop_remainder=False)],
        shard_options=shard,
    )
    return [b.tolist() for b in loader]


def test_loader_shards_by_host_and_covers_every_example_once(ds: ul2.DenoisingDataset) -> None:
    seen: list[int] = []
    for host in (0, 1):
        shard = grain.sharding.ShardOptions(shard_index=host, shard_count=2)
        indices = index_batches(len(ds), 8, shard, shuffle=True, seed=5, num_epochs=1)
        loader = ul2.grain.data_loader(
            ds, 8, shard_options=shard, shuffle=True, seed=5, drop_remainder=False, keep_denoiser=True
        )
        batches = list(loader)
        assert len(batches) == len(indices)
        for got, keys in zip(batches, indices, strict=True):
            assert same({n: np.asarray(a) for n, a in got.items()}, ds.batch(keys))
        seen += [k for keys in indices for k in keys]
    assert sorted(seen) == list(range(len(ds)))


def test_loader_examples_do_not_depend_on_worker_count(ds: ul2.DenoisingDataset) -> None:
    """Each worker batches its own share of the indices (grain's design), so batches group
    differently; the examples of an epoch are the same, and each is the NumPy path's."""

    def epoch_rows(workers: int) -> list[bytes]:
        loader = ul2.grain.data_loader(
            ds,
            4,
            shard_options=grain.sharding.ShardOptions(1, 2),
            shuffle=True,
            seed=1,
            worker_count=workers,
            drop_remainder=False,
        )
        rows = []
        for batch in loader:
            joined = np.concatenate([np.asarray(batch[n]) for n in sorted(batch)], axis=1)
            rows += [r.tobytes() for r in joined]
            del batch  # grain's shared-memory arrays are freed once dropped
        return sorted(rows)

    shard = grain.sharding.ShardOptions(1, 2)
    keys = [k for b in index_batches(len(ds), 4, shard, shuffle=True, seed=1, num_epochs=1) for k in b]
    ref = ds.batch(keys)
    joined = np.concatenate([ref[n] for n in sorted(ref) if n != "denoiser"], axis=1)
    expected = sorted(r.tobytes() for r in joined)
    assert epoch_rows(0) == expected
    assert epoch_rows(2) == expected
