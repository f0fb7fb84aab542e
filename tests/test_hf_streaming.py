"""ul2.hf.StreamingDataset over real datasets.IterableDatasets: the split by rank and DataLoader
worker is the one datasets makes, each (rank, worker) gives DenoisingStream's items over what it
is given (byte for byte), the real torchdata StatefulDataLoader resumes mid-epoch with the
uninterrupted bytes, set_epoch reaches (persistent) workers, and bad input is named."""

from __future__ import annotations

import gc
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")
stateful_dataloader = pytest.importorskip("torchdata.stateful_dataloader")

import ul2  # noqa: E402
import ul2.hf  # noqa: E402
import ul2.torch  # noqa: E402
from datasets.distributed import split_dataset_by_node  # noqa: E402
from torch.utils.data import DataLoader, get_worker_info  # noqa: E402
from ul2.sources import ByteTokenizer  # noqa: E402

StatefulDataLoader = stateful_dataloader.StatefulDataLoader
# torchdata 0.11 (the newest) calls torch.set_vital, which torch 2.15 deprecates: a warning, nothing more.
pytestmark = pytest.mark.filterwarnings("ignore:'set_vital' is deprecated:UserWarning")
TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")
MIXTURE = ul2.presets.ul2()
DOCS = [(np.arange(40 + 13 * i) * 7 + i) % 200 + 10 for i in range(48)]
TABLE = datasets.Dataset.from_dict({"input_ids": [d.tolist() for d in DOCS], "id": list(range(len(DOCS)))})
OPTIONS: dict[str, Any] = dict(inputs_length=32, targets_length=32, dtype=np.int64, seed=3)


def streaming(num_shards: int = 4, **kw: Any) -> ul2.hf.StreamingDataset:
    # A new datasets object each time, as a restarted job builds.
    return ul2.hf.StreamingDataset(
        TABLE.to_iterable_dataset(num_shards=num_shards), MIXTURE, sentinels=SENTINELS, **{**OPTIONS, **kw}
    )


def as_bytes(batch: dict[str, Any]) -> dict[str, bytes]:
    return {k: np.asarray(v).tobytes() for k, v in sorted(batch.items())}


class Given(torch.utils.data.IterableDataset):  # type: ignore[misc]
    """The example ids datasets itself hands each DataLoader worker of ``rank`` (no ul2)."""

    def __init__(self, hf: Any, rank: int, world_size: int, epoch: int) -> None:
        self.hf, self.rank, self.world_size, self.epoch = hf, rank, world_size, epoch

    def __iter__(self) -> Any:
        info = get_worker_info()
        node = split_dataset_by_node(self.hf, rank=self.rank, world_size=self.world_size)
        node.set_epoch(self.epoch)
        for example in node:
            yield (0 if info is None else info.id), int(example["id"])


def given_ids(hf: Any, rank: int, world_size: int, num_workers: int, epoch: int = 0) -> list[list[int]]:
    ids: list[list[int]] = [[] for _ in range(max(num_workers, 1))]
    for worker, i in DataLoader(Given(hf, rank, world_size, epoch), batch_size=None, num_workers=num_workers):
        ids[worker].append(i)
    return ids


def expected(
    ds: ul2.hf.StreamingDataset, num_workers: int, hf: Any = None, epoch: int = 0
) -> list[list[dict[str, bytes]]]:
    """Each worker's items: DenoisingStream over the documents datasets gives it, with its shard seed."""
    workers = max(num_workers, 1)
    ids = given_ids(ds.dataset if hf is None else hf, ds.rank, ds.world_size, num_workers, epoch)
    out = []
    for w, mine in enumerate(ids):
        seed = ds.shard_seed(ds.rank * workers + w, ds.world_size * workers)
        options = {**ds.stream_options, "seed": seed, "epoch": epoch}
        docs = [{"input_ids": DOCS[i]} for i in mine]
        out.append([as_bytes(b) for b in ul2.DenoisingStream(docs, MIXTURE, sentinels=SENTINELS, **options)])
    return out


def assert_each_worker_in_order(got: list[dict[str, bytes]], shards: list[list[dict[str, bytes]]]) -> None:
    assert sorted(map(repr, got)) == sorted(repr(b) for s in shards for b in s)
    for mine in shards:
        keys = {repr(b) for b in mine}
        assert [b for b in got if repr(b) in keys] == mine


def test_one_rank_without_workers_is_the_plain_stream_of_the_documents() -> None:
    ds = streaming(batch_size=4)
    plain = ul2.DenoisingStream(DOCS, MIXTURE, sentinels=SENTINELS, batch_size=4, **OPTIONS)
    got = [as_bytes(b) for b in DataLoader(ds, batch_size=None, collate_fn=ul2.torch.collate_fn)]
    assert got == [as_bytes(b) for b in plain]
    assert isinstance(ds, torch.utils.data.IterableDataset) and isinstance(ds, ul2.torch.IterableDataset)
    assert repr(ds) == (
        "ul2.hf.StreamingDataset(<datasets.IterableDataset, 4 shards>, column='input_ids', rank=0, "
        "world_size=1, seed=3, epoch=0, worker_threads=1)"
    )


def test_workers_get_whole_shards_as_datasets_deals_them() -> None:
    # to_iterable_dataset(num_shards=4) cuts the rows into 4 runs of 12; 2 workers take 0, 2 and 1, 3.
    assert given_ids(TABLE.to_iterable_dataset(num_shards=4), 0, 1, 2) == [
        [*range(0, 12), *range(24, 36)],
        [*range(12, 24), *range(36, 48)],
    ]


@pytest.mark.parametrize(
    ("world_size", "num_workers"),
    [(1, 2), (2, 2), (3, 1)],  # whole shards per rank; every third example per rank (3 does not divide 4)
)
def test_ranks_and_workers_each_give_their_streams_once(world_size: int, num_workers: int) -> None:
    got: list[dict[str, bytes]] = []
    want: list[list[dict[str, bytes]]] = []
    seen: list[int] = []
    for rank in range(world_size):
        ds = streaming(batch_size=4, rank=rank, world_size=world_size)
        mine = [
            as_bytes(b)
            for b in DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=ul2.torch.collate_fn)
        ]
        assert_each_worker_in_order(mine, expected(ds, num_workers))
        got += mine
        want += expected(ds, num_workers)
        seen += [i for ids in given_ids(ds.dataset, rank, world_size, num_workers) for i in ids]
    assert sorted(seen) == list(range(len(DOCS)))  # every document in exactly one (rank, worker)
    assert len({repr(b) for b in got}) == len(got) == sum(map(len, want))


def test_the_loaders_batching_of_single_examples() -> None:
    ds = streaming()
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=ul2.torch.collate_fn)
    assert sum(b["input_ids"].shape[0] for b in loader) == sum(map(len, expected(ds, 2)))


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize("batched_by", ["stream", "loader"])
def test_stateful_dataloader_resumes_mid_epoch_byte_for_byte(num_workers: int, batched_by: str) -> None:
    def loader() -> Any:
        if batched_by == "stream":
            return StatefulDataLoader(
                streaming(batch_size=4),
                batch_size=None,
                num_workers=num_workers,
                collate_fn=ul2.torch.collate_fn,
            )
        return StatefulDataLoader(
            streaming(), batch_size=4, num_workers=num_workers, collate_fn=ul2.torch.collate_fn
        )

    full = [as_bytes(b) for b in loader()]
    assert len(full) > 20
    for k in (1, 7, len(full) - 2):
        first = loader()
        it = iter(first)
        head = [as_bytes(next(it)) for _ in range(k)]
        state = first.state_dict()
        del it, first
        resumed = loader()
        resumed.load_state_dict(state)
        assert head + [as_bytes(b) for b in resumed] == full, k
    # The next pass starts from the beginning again: the loaded state is not applied twice.
    assert [as_bytes(b) for b in resumed] == full


def test_each_workers_state_holds_the_datasets_own_state() -> None:
    loader = StatefulDataLoader(
        streaming(batch_size=4), batch_size=None, num_workers=2, collate_fn=ul2.torch.collate_fn
    )
    it = iter(loader)
    for _ in range(6):
        next(it)
    workers = loader.state_dict()["_snapshot"]["_worker_snapshots"]
    for w in (0, 1):
        state = workers[f"worker_{w}"]["dataset_state"]
        assert (state["shard"], state["shards"]) == (w, 2)
        assert state["stream"]["document"] > 0
        assert set(state["stream"]["source"]) == {"examples_iterable", "epoch"}  # datasets' state_dict()


def test_resuming_on_another_rank_count_is_refused() -> None:
    ds = streaming(batch_size=4)
    it = iter(ds)
    next(it)
    other = streaming(batch_size=4, rank=1, world_size=2)
    other.load_state_dict(ds.state_dict())
    with pytest.raises(ValueError, match="same world_size and num_workers"):
        iter(other)


def test_set_epoch_reaches_persistent_workers_and_gives_fresh_noise_and_order() -> None:
    hf = TABLE.to_iterable_dataset(num_shards=4).shuffle(seed=11, buffer_size=8)
    ds = ul2.hf.StreamingDataset(hf, MIXTURE, sentinels=SENTINELS, batch_size=4, **OPTIONS)
    loader = DataLoader(
        ds, batch_size=None, num_workers=2, persistent_workers=True, collate_fn=ul2.torch.collate_fn
    )
    epochs = []
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        got = [as_bytes(b) for b in loader]
        assert_each_worker_in_order(got, expected(ds, 2, hf, epoch))
        epochs.append(got)
    assert ds.epoch == 1
    assert not {repr(b) for b in epochs[0]} & {repr(b) for b in epochs[1]}
    # The dataset's order changed with the epoch too (its shuffle), not only the noise.
    assert given_ids(hf, 0, 1, 2, 0) != given_ids(hf, 0, 1, 2, 1)


def test_a_later_epoch_resumes_and_a_state_of_another_epoch_is_refused() -> None:
    def loader(epoch: int) -> Any:
        ds = streaming(batch_size=4)
        ds.set_epoch(epoch)
        return StatefulDataLoader(ds, batch_size=None, num_workers=2, collate_fn=ul2.torch.collate_fn)

    full = [as_bytes(b) for b in loader(2)]
    assert not {repr(b) for b in full} & {repr(as_bytes(b)) for b in loader(0)}
    first = loader(2)
    it = iter(first)
    head = [as_bytes(next(it)) for _ in range(5)]
    state = first.state_dict()
    resumed = loader(2)
    resumed.load_state_dict(state)
    assert head + [as_bytes(b) for b in resumed] == full
    # In the main process: a DataLoader that saw a worker's error takes seconds to shut down.
    saved, wrong = streaming(batch_size=4), streaming(batch_size=4)
    saved.set_epoch(2)
    next(iter(saved))
    wrong.set_epoch(3)
    wrong.load_state_dict(saved.state_dict())
    with pytest.raises(ValueError, match="another configuration"):
        next(iter(wrong))


def test_fewer_shards_than_workers_is_an_error_naming_both() -> None:
    loader = DataLoader(streaming(num_shards=1, batch_size=4), batch_size=None, num_workers=2)
    it = iter(loader)
    with pytest.raises(ValueError, match=r"num_workers=2: .*num_shards=1.*num_workers <= 1"):
        next(it)
    # Shut the workers down here: torch waits seconds for each worker of a loader that saw an error.
    del it
    gc.collect()


def test_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match=r"dataset: .*got Dataset; make one with dataset.to_iterable_dataset"):
        ul2.hf.StreamingDataset(TABLE, MIXTURE, sentinels=SENTINELS, inputs_length=32)
    with pytest.raises(TypeError, match=r"dataset: expected a datasets\.IterableDataset .*got list"):
        ul2.hf.StreamingDataset(DOCS, MIXTURE, sentinels=SENTINELS, inputs_length=32)
    with pytest.raises(
        ValueError, match=r"column='text': not a column of the dataset \(columns: \['input_ids', 'id'\]\)"
    ):
        streaming(column="text")
    text = datasets.Dataset.from_dict({"text": ["a b", "c"], "ids": [[1.0], [2.0]]}).to_iterable_dataset()
    for column, feature in (("text", "Value('string')"), ("ids", "List(Value('float64'))")):
        with pytest.raises(
            ValueError, match=re.escape(f"column={column!r}: holds {feature}, not lists of token")
        ):
            ul2.hf.StreamingDataset(text, MIXTURE, sentinels=SENTINELS, column=column, inputs_length=32)
    with pytest.raises(TypeError, match="column=3: must be a str"):
        streaming(column=3)
    with pytest.raises(ValueError, match="rank=2, world_size=2"):
        streaming(rank=2, world_size=2)
    with pytest.raises(ValueError, match="rank=0, world_size=0"):
        streaming(rank=0, world_size=0)
    with pytest.raises(ValueError, match="both or neither"):
        streaming(rank=0)
    with pytest.raises(ValueError, match="inputs_length=0"):
        streaming(inputs_length=0)
    ds = streaming()
    with pytest.raises(ValueError, match=r"epoch=-1"):
        ds.set_epoch(-1)
    assert ds.epoch == 0
    ds.set_epoch(2**64 - 1)  # the whole range epoch= takes
    assert ds.epoch == 2**64 - 1


def test_a_missing_column_of_unknown_features_is_named_when_read() -> None:
    mapped = TABLE.to_iterable_dataset(num_shards=2).map(lambda e: {"n": len(e["input_ids"])})
    assert mapped.features is None  # map() leaves the columns unknown until an example is read
    ds = ul2.hf.StreamingDataset(mapped, MIXTURE, sentinels=SENTINELS, column="tokens", inputs_length=32)
    with pytest.raises(ValueError, match="column='tokens': not a column of the dataset's examples"):
        next(iter(ds))
    ok = ul2.hf.StreamingDataset(mapped, MIXTURE, sentinels=SENTINELS, batch_size=4, **OPTIONS)
    assert [as_bytes(b) for b in ok] == [as_bytes(b) for b in streaming(num_shards=2, batch_size=4)]


@settings(max_examples=50)
@given(
    lengths=st.lists(st.integers(1, 150), min_size=1, max_size=24),
    num_shards=st.integers(1, 6),
    world_size=st.integers(1, 4),
    stop=st.integers(0, 40),
    dtype=st.sampled_from(["int32", "int64", "uint16", "uint32"]),
)
def test_ranks_read_every_document_once_and_resume_anywhere(
    lengths: list[int], num_shards: int, world_size: int, stop: int, dtype: str
) -> None:
    docs = [(np.arange(n) * 31 + i) % 250 + 5 for i, n in enumerate(lengths)]
    features = datasets.Features({"input_ids": datasets.List(datasets.Value(dtype))})
    table = datasets.Dataset.from_dict({"input_ids": [d.tolist() for d in docs]}, features=features)
    num_shards = min(num_shards, len(docs))

    def rank(r: int) -> ul2.hf.StreamingDataset:
        return ul2.hf.StreamingDataset(
            table.to_iterable_dataset(num_shards=num_shards),
            MIXTURE,
            sentinels=SENTINELS,
            rank=r,
            world_size=world_size,
            batch_size=3,
            **OPTIONS,
        )

    documents = tokens = 0
    for r in range(world_size):
        stream = rank(r).stream(r, world_size)
        items = [as_bytes(b) for b in stream]
        documents += stream.counts["documents"]
        tokens += stream.counts["tokens"] + stream.tail
        ds = rank(r)
        it = iter(ds)
        head = [as_bytes(b) for _, b in zip(range(stop), it, strict=False)]
        resumed = rank(r)
        resumed.load_state_dict(ds.state_dict())
        assert head + [as_bytes(b) for b in resumed] == items
    assert documents == len(docs) and tokens == sum(lengths)


def test_the_readme_snippet_runs(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
    setup, *snippets = re.findall(r"```python\n(.*?)```", section, re.S)
    (snippet,) = [s for s in snippets if "ul2.hf.StreamingDataset" in s]
    code = (
        setup
        + snippet
        + "\nassert len(hf_head) == 3 and len(hf_state['_snapshot']['_worker_snapshots']) == 2\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
