"""ul2.torch.IterableDataset: the shard split over workers and ranks, and resumption through the
real torchdata StatefulDataLoader, against per-shard DenoisingStreams (byte for byte)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
stateful_dataloader = pytest.importorskip("torchdata.stateful_dataloader")

import ul2  # noqa: E402
import ul2.torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from ul2.sources import ByteTokenizer  # noqa: E402

StatefulDataLoader = stateful_dataloader.StatefulDataLoader
# torchdata 0.11 (the newest) calls torch.set_vital, which torch 2.15 deprecates: a warning, nothing more.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")
DOCS = [(np.arange(40 + 13 * i) * 7 + i) % 200 + 10 for i in range(48)]
OPTIONS: dict[str, Any] = dict(inputs_length=32, targets_length=32, dtype=np.int64, seed=3)


def make_documents() -> list[np.ndarray]:
    return DOCS


def dataset(**kw: Any) -> ul2.torch.IterableDataset:
    return ul2.torch.IterableDataset(
        make_documents, ul2.presets.ul2(), sentinels=SENTINELS, **{**OPTIONS, **kw}
    )


def as_bytes(batch: dict[str, Any]) -> dict[str, bytes]:
    return {k: np.asarray(v).tobytes() for k, v in sorted(batch.items())}


def per_shard(ds: ul2.torch.IterableDataset, shards: int) -> list[list[dict[str, bytes]]]:
    out = []
    for s in range(shards):
        stream = ul2.DenoisingStream(
            DOCS[s::shards],
            ul2.presets.ul2(),
            sentinels=SENTINELS,
            **{**ds.stream_options, "seed": ds.shard_seed(s, shards), "epoch": ds.epoch},
        )
        out.append([as_bytes(b) for b in stream])
    return out


def test_one_shard_is_the_plain_stream() -> None:
    ds = dataset(batch_size=4)
    plain = ul2.DenoisingStream(DOCS, ul2.presets.ul2(), sentinels=SENTINELS, batch_size=4, **OPTIONS)
    assert [as_bytes(b) for b in ds] == [as_bytes(b) for b in plain]
    assert ds.shard_seed(0, 1) == 3 and len({ds.shard_seed(s, 4) for s in range(4)}) == 4


@pytest.mark.parametrize("num_workers", [0, 2])
def test_plain_dataloader_gives_each_shard_once(num_workers: int) -> None:
    ds = dataset(batch_size=4)
    loader = DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=ul2.torch.collate_fn)
    got = [as_bytes(b) for b in loader]
    shards = per_shard(ds, max(num_workers, 1))
    assert sorted(map(repr, got)) == sorted(repr(b) for s in shards for b in s)
    # Each worker's batches arrive in its stream's order.
    for expected in shards:
        mine = {repr(b) for b in expected}
        assert [b for b in got if repr(b) in mine] == expected


def test_ranks_and_workers_split_the_documents_without_overlap() -> None:
    world, workers = 2, 2
    got: list[dict[str, bytes]] = []
    for rank in range(world):
        ds = dataset(batch_size=4, rank=rank, world_size=world)
        got += [
            as_bytes(b)
            for b in DataLoader(ds, batch_size=None, num_workers=workers, collate_fn=ul2.torch.collate_fn)
        ]
    expected = [b for s in per_shard(dataset(batch_size=4), world * workers) for b in s]
    assert sorted(map(repr, got)) == sorted(map(repr, expected))
    assert len({repr(b) for b in got}) == len(got)
    # Every document's tokens are in exactly one shard.
    shard_docs = [list(dataset().shard_documents(s, 4)) for s in range(4)]
    assert sum(len(d) for d in shard_docs) == len(DOCS)


def test_set_epoch_reaches_persistent_workers() -> None:
    ds = dataset(batch_size=4)
    loader = DataLoader(
        ds, batch_size=None, num_workers=2, persistent_workers=True, collate_fn=ul2.torch.collate_fn
    )
    passes = []
    for epoch in (0, 5, 2**64 - 1):
        ds.set_epoch(epoch)
        got = [as_bytes(b) for b in loader]
        assert sorted(map(repr, got)) == sorted(repr(b) for s in per_shard(ds, 2) for b in s)
        passes.append({repr(b) for b in got})
    assert not passes[0] & passes[1] and not passes[1] & passes[2]
    assert ds.epoch == 2**64 - 1 and dataset(epoch=7).epoch == 7 and "epoch" not in ds.stream_options
    with pytest.raises(TypeError, match=r"epoch=1\.5"):
        ds.set_epoch(1.5)


def test_examples_batched_by_the_loader() -> None:
    ds = dataset()  # one example per item; the loader stacks them
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=ul2.torch.collate_fn)
    rows = sum(b["input_ids"].shape[0] for b in loader)
    assert rows == sum(len(s) for s in per_shard(dataset(), 2))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("batched_by", ["stream", "loader"])
def test_stateful_dataloader_resumes_byte_for_byte(num_workers: int, batched_by: str) -> None:
    def loader() -> Any:
        if batched_by == "stream":
            return StatefulDataLoader(
                dataset(batch_size=4),
                batch_size=None,
                num_workers=num_workers,
                collate_fn=ul2.torch.collate_fn,
            )
        return StatefulDataLoader(
            dataset(), batch_size=4, num_workers=num_workers, collate_fn=ul2.torch.collate_fn
        )

    full = [as_bytes(b) for b in loader()]
    assert len(full) > 10
    for k in (1, 5, 9):
        first = loader()
        it = iter(first)
        head = [as_bytes(next(it)) for _ in range(k)]
        state = first.state_dict()
        del it, first
        resumed = loader()
        resumed.load_state_dict(state)
        assert head + [as_bytes(b) for b in resumed] == full, k


def test_state_checks_the_shard() -> None:
    ds = dataset(batch_size=4)
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    plain = ul2.DenoisingStream(DOCS, ul2.presets.ul2(), sentinels=SENTINELS, batch_size=4, **OPTIONS)
    next(plain)
    assert state == {"shard": 0, "shards": 1, "stream": plain.state_dict()}
    other = dataset(batch_size=4, rank=1, world_size=2)
    other.load_state_dict(state)
    with pytest.raises(ValueError, match="same world_size and num_workers"):
        iter(other)
    with pytest.raises(ValueError, match="rank"):
        dataset(rank=2, world_size=2)
    with pytest.raises(ValueError, match="both or neither"):
        dataset(rank=0)
