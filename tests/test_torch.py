"""ul2.torch: the map-style Dataset, collate_fn and the 4-D prefix-LM mask, against the NumPy path."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import ul2  # noqa: E402
import ul2.torch  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, Subset  # noqa: E402
from ul2.sources import ByteTokenizer, stdlib_stream  # noqa: E402

TOK = ByteTokenizer()
SENTINELS = TOK.sentinels(on_overflow="cap")


@pytest.fixture(scope="module")
def tokens() -> np.ndarray:
    return stdlib_stream(TOK, max_bytes=150_000)


@pytest.fixture(scope="module")
def enc_dec(tokens: np.ndarray) -> ul2.DenoisingDataset:
    return ul2.DenoisingDataset(
        tokens, ul2.presets.ul2(), sentinels=SENTINELS, inputs_length=64, targets_length=64, dtype=np.int64
    )


@pytest.fixture(scope="module")
def decoder(tokens: np.ndarray) -> ul2.DenoisingDataset:
    return ul2.DenoisingDataset(
        tokens, ul2.presets.ul2(), sentinels=SENTINELS, sequence_length=64, dtype=np.int64
    )


def assert_same(batch: dict, ref: dict) -> None:
    assert list(batch) == list(ref)
    for name, a in ref.items():
        t = batch[name]
        assert isinstance(t, torch.Tensor), name
        assert tuple(t.shape) == a.shape, name
        assert t.numpy().dtype == a.dtype, name
        assert t.numpy().tobytes() == a.tobytes(), name


def test_getitems_is_one_batch_of_the_numpy_path(enc_dec: ul2.DenoisingDataset) -> None:
    tds = ul2.torch.Dataset(enc_dec)
    keys = [5, 0, 17, 3]
    batch = ul2.torch.collate_fn(tds.__getitems__(keys))
    assert_same(batch, enc_dec.batch(keys))
    assert set(batch) == {
        "input_ids",
        "attention_mask",
        "labels",
        "decoder_input_ids",
        "decoder_attention_mask",
        "denoiser",
    }
    assert batch["input_ids"].dtype == torch.int64 and batch["labels"].dtype == torch.int64
    assert batch["input_ids"].shape == (4, 64) and batch["labels"].shape == (4, 64)


def test_tensors_share_memory_with_the_numpy_outputs(enc_dec: ul2.DenoisingDataset) -> None:
    arrays = ul2.torch.Dataset(enc_dec).__getitems__([1, 2, 3])
    batch = ul2.torch.collate_fn(arrays)
    for name, a in arrays.items():
        t = batch[name]
        assert t.data_ptr() == a.ctypes.data, name
        assert np.shares_memory(t.numpy(), a), name
    item = ul2.torch.Dataset(enc_dec)[7]
    ref = enc_dec[7]
    for name, a in ref.items():
        assert item[name].numpy().tobytes() == a.tobytes(), name
        assert item[name].shape == a.shape


def test_int32_outputs_stay_int32(tokens: np.ndarray) -> None:
    ds = ul2.DenoisingDataset(tokens, ul2.presets.t5(), sentinels=SENTINELS, inputs_length=64)
    batch = ul2.torch.collate_fn(ul2.torch.Dataset(ds).__getitems__([0, 1]))
    assert batch["input_ids"].dtype == torch.int32  # not converted: ask for dtype=np.int64 instead


def test_collate_fn_stacks_per_example_dicts(enc_dec: ul2.DenoisingDataset) -> None:
    tds = ul2.torch.Dataset(enc_dec)
    batch = ul2.torch.collate_fn([tds[k] for k in (4, 9, 2)])
    assert_same(batch, enc_dec.batch([4, 9, 2]))


def test_collate_fn_refuses_packed_examples_one_by_one(tokens: np.ndarray) -> None:
    ds = ul2.DenoisingDataset(tokens, ul2.presets.ul2r(), sentinels=SENTINELS, sequence_length=256, pack=True)
    tds = ul2.torch.Dataset(ds)
    with pytest.raises(ValueError, match="cu_seqlens"):
        ul2.torch.collate_fn([tds[0], tds[1]])
    batch = ul2.torch.collate_fn(tds.__getitems__([0, 1]))  # the batched path works
    assert_same(batch, ds.batch([0, 1]))
    with pytest.raises(TypeError, match="batch"):
        ul2.torch.collate_fn(42)
    with pytest.raises(TypeError, match="DenoisingDataset"):
        ul2.torch.Dataset(tokens)  # type: ignore[arg-type]


ORDER = [int(k) for k in np.random.default_rng(3).permutation(48)]  # a shuffled sampler


def test_dataloader_gives_the_same_examples_for_0_1_and_2_workers(enc_dec: ul2.DenoisingDataset) -> None:
    runs = []
    for workers in (0, 1, 2):
        loader = ul2.torch.data_loader(enc_dec, 8, sampler=ORDER, num_workers=workers)
        runs.append([{n: t.numpy().copy() for n, t in b.items()} for b in loader])
    order = ORDER
    expected = [enc_dec.batch(order[i : i + 8]) for i in range(0, 48, 8)]
    for run in runs:
        assert len(run) == 6
        for got, ref in zip(run, expected, strict=True):
            assert_same({n: torch.from_numpy(a) for n, a in got.items()}, ref)


def test_pin_memory_with_workers(enc_dec: ul2.DenoisingDataset) -> None:
    with warnings.catch_warnings():
        # Without CUDA, PyTorch warns that pin_memory does nothing here, and goes on.
        warnings.filterwarnings("ignore", message=".*pin_memory.*", category=UserWarning)
        loader = ul2.torch.data_loader(enc_dec, 4, num_workers=2, pin_memory=True)
        it = iter(loader)
        first = next(it)
        del it
    assert_same(first, enc_dec.batch([0, 1, 2, 3]))
    if torch.cuda.is_available():
        assert first["input_ids"].is_pinned()


class ThreadsSeen(ul2.torch.Dataset):
    """Reports ul2's thread count in the process that computed each batch."""

    def __getitems__(self, indices):  # type: ignore[no-untyped-def]
        out = super().__getitems__(indices)
        out["threads"] = np.full(len(indices), ul2.get_num_threads())
        return out


def test_workers_use_one_ul2_thread_by_default(enc_dec: ul2.DenoisingDataset) -> None:
    before = ul2.get_num_threads()
    for threads, expected in ((1, 1), (2, 2)):
        loader = DataLoader(
            ThreadsSeen(enc_dec, worker_threads=threads),
            batch_size=4,
            num_workers=2,
            collate_fn=ul2.torch.collate_fn,
        )
        seen = {int(t) for _, b in zip(range(4), loader, strict=False) for t in b["threads"]}
        assert seen == {expected}
    main = [
        int(t)
        for b in DataLoader(
            ThreadsSeen(enc_dec), batch_size=4, sampler=range(8), collate_fn=ul2.torch.collate_fn
        )
        for t in b["threads"]
    ]
    assert set(main) == {before} == {ul2.get_num_threads()}  # the main process is left alone
    with pytest.raises(ValueError, match="worker_threads"):
        ul2.torch.Dataset(enc_dec, worker_threads=0)


def test_distributed_sampler_over_two_ranks_covers_every_sample_once(enc_dec: ul2.DenoisingDataset) -> None:
    n = 2 * (min(len(enc_dec), 60) // 2)
    data = Subset(ul2.torch.Dataset(enc_dec), range(n))
    seen: list[int] = []
    for rank in (0, 1):
        sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(1)
        indices = list(sampler)
        seen += indices
        batches = list(ul2.torch.data_loader(data, 5, sampler=sampler))
        assert sum(len(b["input_ids"]) for b in batches) == len(indices)
        for i, b in enumerate(batches):
            assert_same(b, enc_dec.batch(indices[5 * i : 5 * i + 5]))
    assert sorted(seen) == list(range(n))


def reference_mask(attention: np.ndarray, prefix: np.ndarray, segments: np.ndarray | None) -> np.ndarray:
    """allowed[b, q, k], by loops over the definition."""
    b, s = attention.shape
    out = np.zeros((b, s, s), dtype=bool)
    for i in range(b):
        for q in range(s):
            for k in range(s):
                same = segments is None or segments[i, q] == segments[i, k]
                real = attention[i, k] == 1
                out[i, q, k] = real and same and (k <= q or (prefix[i, q] and prefix[i, k]))
    return out


def test_attention_mask_4d_unpacked(decoder: ul2.DenoisingDataset) -> None:
    batch = decoder.batch([0, 1, 2, 3, 4, 5])
    s = batch["input_ids"].shape[1]
    prefix = np.arange(s)[None, :] < batch["prefix_lengths"][:, None]
    mask = ul2.torch.attention_mask_4d(ul2.torch.collate_fn(batch))
    assert mask.shape == (6, 1, s, s) and mask.dtype == torch.float32
    allowed = mask[:, 0].numpy() == 0
    assert np.array_equal(allowed, reference_mask(batch["attention_mask"], prefix, None))
    assert (mask[:, 0].numpy()[~allowed] == torch.finfo(torch.float32).min).all()
    causal = ul2.torch.attention_mask_4d(batch, bidirectional=False, dtype=torch.bfloat16)
    assert causal.dtype == torch.bfloat16
    assert np.array_equal(
        causal[:, 0].float().numpy() == 0,
        reference_mask(batch["attention_mask"], np.zeros_like(prefix), None),
    )


def test_attention_mask_4d_packed() -> None:
    rng = np.random.default_rng(0)
    starts = np.cumsum(rng.integers(8, 40, 200))  # short documents: several fit in a row
    tokens = rng.integers(3, 259, int(starts[-1]), dtype=np.int32)
    ds = ul2.DenoisingDataset(
        tokens,
        ul2.presets.ul2(),
        sentinels=SENTINELS,
        sequence_length=96,
        pack=True,
        doc_offsets=np.concatenate([[0], starts[:-1]]),
        documents="respect",
    )
    rows = [r for r in range(len(ds)) if len(ds.samples(r)) > 1][:3]
    batch = ds.batch(rows)
    assert len(rows) == 3 and (batch["segment_ids"].max(axis=1) > 1).all()  # rows of several examples
    mask = ul2.torch.attention_mask_4d(batch)
    expected = reference_mask(
        batch["attention_mask"], batch["bidirectional_mask"].astype(bool), batch["segment_ids"]
    )
    assert np.array_equal(mask[:, 0].numpy() == 0, expected)


def test_a_memmapped_corpus_is_read_in_place_by_the_workers(tmp_path, tokens: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "tokens.u16"
    tokens.astype(np.uint16).tofile(path)
    mm = np.memmap(path, dtype=np.uint16, mode="r")
    kwargs = dict(sentinels=SENTINELS, inputs_length=64, targets_length=64, dtype=np.int64)
    on_disk = ul2.DenoisingDataset(mm, ul2.presets.ul2(), **kwargs)
    assert np.shares_memory(on_disk.tokens, mm)  # not copied
    in_memory = ul2.DenoisingDataset(tokens.copy(), ul2.presets.ul2(), **kwargs)
    keys = ORDER[:16]
    loader = ul2.torch.data_loader(on_disk, 8, sampler=keys, num_workers=2, multiprocessing_context="spawn")
    for i, batch in enumerate(loader):
        assert_same(batch, in_memory.batch(keys[8 * i : 8 * i + 8]))


def storages(batch: dict) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in batch.values()}


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_a_worker_batch_is_views_of_one_storage(tokens: np.ndarray, dtype: type) -> None:
    """Inside workers the fields are copied into one shared storage, so a batch crosses to the
    main process in one piece; the bytes and dtypes are the NumPy path's."""
    ds = ul2.DenoisingDataset(
        tokens, ul2.presets.ul2(), sentinels=SENTINELS, inputs_length=64, targets_length=64, dtype=dtype
    )
    for batch, start in zip(ul2.torch.data_loader(ds, 8, num_workers=2), range(0, 48, 8), strict=False):
        assert len(storages(batch)) == 1
        assert_same(batch, ds.batch(range(start, start + 8)))
    main = ul2.torch.collate_fn(ds.batch(range(8)))  # the main process: from_numpy, no copy
    assert len(storages(main)) == len(main)


def test_tensors_widens_the_fields_named_int64(enc_dec: ul2.DenoisingDataset) -> None:
    batch = {"ids": np.arange(6, dtype=np.int32).reshape(2, 3), "labels": np.array([[-100, 7]], np.int32)}
    out = ul2.torch.tensors(batch, int64=["labels"])
    assert out["ids"].dtype == torch.int32 and out["labels"].dtype == torch.int64
    assert out["labels"].tolist() == [[-100, 7]] and np.shares_memory(out["ids"].numpy(), batch["ids"])

    class Widened(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 4

        def __getitems__(self, indices: list[int]) -> dict:
            return {**batch, "mask": torch.ones(2)}  # a tensor passes as it is

    loader = DataLoader(
        Widened(), batch_size=2, num_workers=1, collate_fn=lambda b: ul2.torch.tensors(b, int64=["labels"])
    )
    got = next(iter(loader))
    assert got["labels"].dtype == torch.int64 and got["labels"].tolist() == [[-100, 7]]
    assert got["ids"].untyped_storage().data_ptr() == got["labels"].untyped_storage().data_ptr()
    assert torch.equal(got["mask"], torch.ones(2))
