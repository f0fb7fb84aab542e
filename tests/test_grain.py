"""ul2.grain: the data source, the batch transform and the host-sharded loader, against the NumPy
path; the IterDataset of a grain pipeline of documents, against DenoisingStream, checkpointed."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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


# DenoiseIterDataset: a grain pipeline of documents, denoised as DenoisingStream does.

STREAM_SENTINELS = ul2.Sentinels.t5(1000, 60, on_overflow="cap")
STREAM_MIXTURE = ul2.Mixture(
    [
        (ul2.SpanCorruption(3.0, 0.15, prefix=(7,)), 1.0),
        (ul2.SpanCorruption(8.0, 0.5), 1.0),
        (ul2.PrefixLM(0.5), 1.0),
    ]
)
# No reader threads: the documents are in memory, and a pipeline is built per example.
IN_MEMORY = grain.ReadOptions(num_threads=0)


def documents(lengths: list[int], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 900, size=n).astype(np.int32) for n in lengths]


def denoised(docs: list[np.ndarray], **options: Any) -> ul2.grain.DenoiseIterDataset:
    parent = grain.MapDataset.source(docs).to_iter_dataset(IN_MEMORY)
    return ul2.grain.DenoiseIterDataset(parent, STREAM_MIXTURE, sentinels=STREAM_SENTINELS, **options)


def same_items(got: list[dict], want: list[dict]) -> bool:
    return len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))


stream_setups = st.fixed_dictionaries(
    {
        "lengths": st.lists(st.one_of(st.integers(0, 3), st.integers(0, 300)), min_size=1, max_size=8),
        "seed": st.integers(0, 2**16),
        "documents_mode": st.sampled_from(["concat", "respect"]),
        "pack": st.booleans(),
        "budget": st.sampled_from([{"inputs_length": 32}, {"sequence_length": 48}]),
        "batch_size": st.one_of(st.none(), st.integers(1, 3)),
    }
)


def stream_options(s: dict[str, Any]) -> dict[str, Any]:
    return {
        "documents_mode": s["documents_mode"],
        "pack": s["pack"],
        "seed": s["seed"],
        "batch_size": s["batch_size"],
        **s["budget"],
    }


@given(stream_setups, st.integers(0, 10), st.integers(0, 10))
def test_denoise_iter_dataset_is_the_stream_and_resumes_from_any_item(
    s: dict[str, Any], stop: int, rewind: int
) -> None:
    docs, options = documents(s["lengths"], s["seed"]), stream_options(s)
    want = list(ul2.DenoisingStream(iter(docs), STREAM_MIXTURE, sentinels=STREAM_SENTINELS, **options))
    assert same_items(list(denoised(docs, **options)), want)

    first = iter(denoised(docs, **options))
    got = [item for _, item in zip(range(stop), first, strict=False)]
    state = first.get_state()
    assert json.loads(json.dumps(state)) == state  # grain and orbax checkpoint it as JSON
    resumed = iter(denoised(docs, **options))  # a restarted job: a new pipeline, then the state
    resumed.set_state(state)
    assert resumed.get_state() == state
    assert same_items(got + list(resumed), want)

    # set_state on an iterator already under way goes back to the state, as grain's iterators do.
    again = [item for _, item in zip(range(rewind), first, strict=False)]
    first.set_state(state)
    assert same_items(got + list(first), want) and len(again) <= len(want) - len(got)


def test_denoise_iter_dataset_passes_grains_own_checkpoint_check() -> None:
    """Restored at every step, the rest is the same, and the state's structure never changes."""
    from grain.experimental import assert_equal_output_after_checkpoint

    docs = documents([40, 0, 300, 7, 120, 260, 2], seed=3)
    assert_equal_output_after_checkpoint(denoised(docs, inputs_length=32, batch_size=2))
    assert_equal_output_after_checkpoint(
        denoised(docs, sequence_length=48, pack=True, documents_mode="respect")
    )


def test_denoise_iter_dataset_after_grain_ops_and_before_grain_batch_and_prefetch() -> None:
    """Documents read, filtered and mapped by grain (with its reader threads), denoised, then
    batched and prefetched by grain: the dataset's batches over the documents that reach it."""
    docs = documents([50, 0, 200, 3, 400, 90, 0, 310, 25, 160], seed=9)
    kept = [d for d in docs if len(d) > 10]
    parent = (
        grain.MapDataset.source(docs)
        .filter(lambda d: len(d) > 10)
        .to_iter_dataset()
        .map(lambda d: {"tokens": d, "length": len(d)})
    )

    def pipeline() -> grain.IterDataset:
        ds = ul2.grain.DenoiseIterDataset(
            parent, STREAM_MIXTURE, sentinels=STREAM_SENTINELS, column="tokens", inputs_length=32
        )
        return grain.experimental.ThreadPrefetchIterDataset(ds.batch(4), prefetch_buffer_size=2)

    ds = ul2.DenoisingDataset(
        np.concatenate(kept),
        STREAM_MIXTURE,
        sentinels=STREAM_SENTINELS,
        doc_offsets=np.cumsum([0] + [len(d) for d in kept]),
        inputs_length=32,
    )
    want = [ds.batch(range(i, min(i + 4, len(ds)))) for i in range(0, len(ds), 4)]
    got = list(pipeline())
    assert same_items(got, want)

    it = iter(pipeline())
    head = [next(it) for _ in range(3)]
    state = json.loads(json.dumps(it.get_state()))
    resumed = iter(pipeline())
    resumed.set_state(state)
    assert same_items(head + list(resumed), want)


def test_denoise_iter_dataset_bad_input_names_the_argument() -> None:
    docs = documents([30, 40], seed=0)
    with pytest.raises(TypeError, match=r"parent: a grain\.MapDataset; pass parent.to_iter_dataset\(\)"):
        ul2.grain.DenoiseIterDataset(
            grain.MapDataset.source(docs), STREAM_MIXTURE, sentinels=STREAM_SENTINELS
        )
    with pytest.raises(TypeError, match=r"parent: expected a grain\.IterDataset of documents, got list"):
        ul2.grain.DenoiseIterDataset(docs, STREAM_MIXTURE, sentinels=STREAM_SENTINELS)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="inputs_length=0"):
        denoised(docs, inputs_length=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        denoised(docs, inputs_length=32, batch_size=0)
    with pytest.raises(TypeError, match="unexpected keyword argument 'input_length'"):
        denoised(docs, input_length=32)
    with pytest.raises(TypeError, match="mixture="):
        ul2.grain.DenoiseIterDataset(
            grain.MapDataset.source(docs).to_iter_dataset(),
            "ul2",
            sentinels=STREAM_SENTINELS,
            inputs_length=32,
        )  # type: ignore[arg-type]

    it = iter(denoised(docs, inputs_length=32))
    next(it)
    state = it.get_state()
    with pytest.raises(ValueError, match=r"state: not a ul2\.grain\.DenoiseIterDataset"):
        iter(denoised(docs, inputs_length=32)).set_state({"next_index": 1})
    with pytest.raises(ValueError, match="state: saved by a stream of another configuration"):
        iter(denoised(docs, inputs_length=32, seed=1)).set_state(state)
    assert "DenoiseIterDataset(3 denoisers, format='hf', batch_size=None)" in str(
        denoised(docs, inputs_length=32)
    )
