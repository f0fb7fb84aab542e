"""``ul2.DenoisingDataset`` (SPEC §1 sampler / index, §6 determinism, §8.5-8.7): samples tile
the stream exactly, use their denoiser's planned raw length, lose no token (round trip), respect
document boundaries or join documents with a separator, pack consecutive samples, are the same
whatever the batching, threads or process, and bad arguments raise errors naming them."""

from __future__ import annotations

import hashlib
import itertools
import multiprocessing
import operator
import pickle
import subprocess
import sys
import textwrap
import tracemalloc

import numpy as np
import pytest
import ul2

SENTINELS = ul2.Sentinels.t5(32228, 128)
SENTINEL_IDS = SENTINELS.ids.tolist()
SENTINEL_SET = frozenset(SENTINEL_IDS)
EOS, PAD = 1, 0
ENC_DEC = dict(inputs_length=512, targets_length=512)


def stream(n: int, seed: int = 0, dtype=np.int32) -> np.ndarray:
    """Ordinary ids in [2, 32000): never pad, EOS or a sentinel."""
    return np.random.default_rng(seed).integers(2, 32000, n).astype(dtype)


def make(tokens, mixture=None, **kw) -> ul2.DenoisingDataset:
    kw.setdefault("sentinels", SENTINELS)
    if "sequence_length" not in kw:
        for k, v in ENC_DEC.items():
            kw.setdefault(k, v)
    return ul2.DenoisingDataset(tokens, ul2.presets.ul2() if mixture is None else mixture, **kw)


def invert(d: ul2.Denoiser, inputs: list[int], targets: list[int]) -> list[int]:
    """Raw tokens of one example from its inputs (prompt + body + EOS) and targets (+ EOS)."""
    assert inputs[: len(d.prefix)] == list(d.prefix)
    assert inputs[-1] == EOS and targets[-1] == EOS
    body, tbody = inputs[len(d.prefix) : -1], targets[:-1]
    if not isinstance(d, ul2.SpanCorruption):
        assert not SENTINEL_SET & set(body + tbody)
        return body + tbody
    in_sent = [t for t in body if t in SENTINEL_SET]
    assert in_sent == SENTINEL_IDS[: len(in_sent)]
    blocks: dict[int, list[int]] = {}
    cur = None
    for t in tbody:
        if t in SENTINEL_SET:
            assert t not in blocks
            cur = t
            blocks[t] = []
        else:
            assert cur is not None
            blocks[cur].append(t)
    assert list(blocks)[: len(in_sent)] == in_sent and len(blocks) - len(in_sent) in (0, 1)
    raw: list[int] = []
    for t in body:
        raw.extend(blocks[t] if t in SENTINEL_SET else [t])
    return raw


def hf_examples(out: dict[str, np.ndarray]) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) of each row of an unpacked hf batch."""
    res = []
    for r in range(out["input_ids"].shape[0]):
        n_in = int(out["attention_mask"][r].sum())
        n_t = int(out["decoder_attention_mask"][r].sum())
        assert out["attention_mask"][r, :n_in].all() and (out["labels"][r, n_t:] == -100).all()
        res.append((out["input_ids"][r, :n_in].tolist(), out["labels"][r, :n_t].tolist()))
    return res


def batch_bytes(out: dict[str, np.ndarray]) -> bytes:
    return b"".join(name.encode() + np.ascontiguousarray(out[name]).tobytes() for name in sorted(out))


# ---------------------------------------------------------------------------------------------
# The index: tiling, lengths, tail


@pytest.mark.parametrize("dtype", [np.int32, np.uint16, np.int64, np.uint32])
def test_samples_tile_the_stream(dtype):
    tokens = stream(30_000, dtype=dtype)
    ds = make(tokens)
    n = len(ds)
    assert n == ds.num_samples > 0
    assert ds.stream_length == tokens.size
    assert ds.raw_lengths == [r.raw_length for r in ds.plan()] == [568, 588, 766, 908, 600, 1006, 511]
    spans = [ds.span(k) for k in range(n)]
    assert spans[0][0] == 0
    for k in range(n - 1):
        assert spans[k][1] == spans[k + 1][0]
    for k, (a, b) in enumerate(spans):
        assert b - a == ds.raw_lengths[ds.denoiser(k)]
    used = spans[-1][1]
    assert used + ds.tail == tokens.size
    # The tail is less than the longest raw length, so no further sample of any kind fits.
    assert 0 <= ds.tail < max(ds.raw_lengths)
    assert f"tail {ds.tail}" in repr(ds)


def test_token_dtypes_and_memmap_give_the_same_examples(tmp_path):
    tokens = stream(12_000)
    ref = make(tokens, format="seqio")
    keys = list(range(len(ref)))
    want = ref.batch(keys)
    path = tmp_path / "tokens.u16"
    mm = np.memmap(path, dtype=np.uint16, mode="w+", shape=tokens.shape)
    mm[:] = tokens
    mm.flush()
    del mm
    readonly = np.memmap(path, dtype=np.uint16, mode="r", shape=tokens.shape)
    assert not readonly.flags.writeable
    sources = [tokens.astype(np.uint16), tokens.astype(np.int64), tokens.astype(np.uint32), readonly]
    for src in sources:
        ds = make(src, format="seqio")
        assert len(ds) == len(ref) and ds.tail == ref.tail
        got = ds.batch(keys)
        assert set(got) == set(want)
        for name in want:
            assert got[name].dtype == want[name].dtype
            if name != "denoiser":
                assert got[name].dtype == np.int32  # outputs follow dtype=, not the token dtype
            assert np.array_equal(got[name], want[name]), (type(src), name)
    # The memmap is still intact after being read.
    assert np.array_equal(readonly, tokens)


def test_item_equals_batch_row_and_batch_order_is_irrelevant():
    ds = make(stream(20_000), seed=4)
    whole = ds.batch([3, 1, 2])
    for i, k in enumerate([3, 1, 2]):
        item = ds[k]
        single = ds.batch([k])
        assert set(item) == set(whole)
        for name in whole:
            assert np.array_equal(item[name], single[name][0]), name
            assert np.array_equal(item[name], whole[name][i]), name
        assert int(item["denoiser"]) == ds.denoiser(k)
    # Negative indices count from the end, like a sequence.
    last = ds[-1]
    for name, a in ds[len(ds) - 1].items():
        assert np.array_equal(a, last[name])
    # Repeated keys give repeated rows.
    rep = ds.batch([5, 5])
    assert all(np.array_equal(a[0], a[1]) for a in rep.values())


def test_every_raw_token_appears_exactly_once():
    """SPEC §8.6: round trip of every sample (hf, ul2(), 128 sentinels)."""
    tokens = stream(40_000, seed=2)
    mixture = ul2.presets.ul2()
    ds = make(tokens, mixture, seed=9)
    assert ds.format == "hf"
    keys = list(range(len(ds)))
    out = ds.batch(keys)
    seen = set()
    for k, (inputs, targets) in zip(keys, hf_examples(out), strict=True):
        j = int(out["denoiser"][k])
        assert j == ds.denoiser(k)
        seen.add(j)
        a, b = ds.span(k)
        assert invert(mixture.denoisers[j], inputs, targets) == tokens[a:b].tolist(), k
    assert len(seen) == 7
    assert sum(b - a for a, b in map(ds.span, keys)) + ds.tail == tokens.size


def test_prompts_are_counted_in_the_raw_lengths():
    prompts = {"[NLU]": [11, 12], "[NLG]": [13], "[S2S]": [14, 15, 16]}
    mixture = ul2.presets.ul2(prompts)
    tokens = stream(20_000, seed=3)
    ds = make(tokens, mixture)
    assert ds.raw_lengths == [r.raw_length for r in ul2.plan(mixture, sentinels=SENTINELS, **ENC_DEC)]
    assert ds.raw_lengths != make(tokens).raw_lengths
    out = ds.batch(list(range(len(ds))))
    for k, (inputs, targets) in enumerate(hf_examples(out)):
        d = mixture.denoisers[int(out["denoiser"][k])]
        assert len(inputs) <= 512 and len(targets) <= 512
        a, b = ds.span(k)
        assert invert(d, inputs, targets) == tokens[a:b].tolist()


# ---------------------------------------------------------------------------------------------
# Documents


def documents(n_docs: int, max_len: int, seed: int, long_first: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lens = rng.integers(0, max_len, n_docs)
    # a long document (unless only short ones are wanted), an empty one, a one-token one
    lens[:3] = [max_len * 3 if long_first else max_len - 1, 0, 1]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return stream(int(offsets[-1]), seed=seed), offsets


@pytest.mark.parametrize("with_end", [True, False], ids=["offsets+end", "starts-only"])
def test_respect_documents(with_end):
    tokens, offsets = documents(60, 1500, seed=5)
    mixture = ul2.presets.ul2()
    ds = make(tokens, mixture, doc_offsets=offsets if with_end else offsets[:-1], documents="respect")
    assert ds.tail == 0 and ds.stream_length == tokens.size
    spans = [ds.span(k) for k in range(len(ds))]
    # Samples tile the stream and never cross a boundary.
    assert spans[0][0] == 0 and spans[-1][1] == tokens.size
    assert all(spans[k][1] == spans[k + 1][0] for k in range(len(spans) - 1))
    bounds = set(offsets.tolist())
    for k, (a, b) in enumerate(spans):
        assert b > a, "no empty samples"
        doc = np.searchsorted(offsets, a, side="right") - 1
        assert b <= offsets[doc + 1], f"sample {k} {a, b} crosses the boundary {offsets[doc + 1]}"
        raw = ds.raw_lengths[ds.denoiser(k)]
        # Full planned length, except a document's last sample (shorter).
        if b in bounds:
            assert b - a <= raw
        else:
            assert b - a == raw
    # Every non-empty document is fully covered by its samples.
    starts = {a for a, _ in spans}
    stops = {b for _, b in spans}
    for lo, hi in itertools.pairwise(offsets):
        if hi > lo:
            assert lo in starts and hi in stops
    # The samples' contents round-trip.
    out = ds.batch(list(range(len(ds))))
    for k, (inputs, targets) in enumerate(hf_examples(out)):
        a, b = spans[k]
        assert invert(mixture.denoisers[int(out["denoiser"][k])], inputs, targets) == tokens[a:b].tolist()


def test_concat_documents_ignore_boundaries():
    tokens, offsets = documents(40, 300, seed=6)
    plain = make(tokens)
    ds = make(tokens, doc_offsets=offsets, documents="concat")
    assert [ds.span(k) for k in range(len(ds))] == [plain.span(k) for k in range(len(plain))]
    assert ds.tail == plain.tail
    assert any(
        np.searchsorted(offsets, a, side="right") != np.searchsorted(offsets, b - 1, side="right")
        for a, b in map(ds.span, range(len(ds)))
    ), "with these short documents some sample spans two documents"


def test_concat_with_separator():
    sep = 7  # an ordinary id, not a sentinel
    tokens, offsets = documents(40, 300, seed=7, long_first=False)
    n_docs = len(offsets) - 1
    mixture = ul2.presets.ul2()
    ds = make(tokens, mixture, doc_offsets=offsets, documents="concat", separator_id=sep)
    joined = np.insert(tokens, offsets[1:-1], sep)
    assert joined.size == tokens.size + n_docs - 1 == ds.stream_length
    assert ds.span(len(ds) - 1)[1] + ds.tail == ds.stream_length
    out = ds.batch(list(range(len(ds))))
    seps = 0
    for k, (inputs, targets) in enumerate(hf_examples(out)):
        a, b = ds.span(k)
        raw = invert(mixture.denoisers[int(out["denoiser"][k])], inputs, targets)
        assert raw == joined[a:b].tolist(), k
        seps += raw.count(sep)
    # Sample 0 holds the first document, a separator, the empty document's separator, the
    # one-token document and its separator, and so on.
    a, b = ds.span(0)
    assert a == 0 and b > offsets[3] + 2
    assert joined[offsets[1]] == joined[offsets[1] + 1] == sep
    assert joined[offsets[3] + 1] == tokens[offsets[2]] and joined[offsets[3] + 2] == sep
    assert seps > 0


def test_separator_in_respect_mode_is_rejected_or_changes_nothing():
    """Documents never join in respect mode, so a separator has nowhere to go."""
    tokens, offsets = documents(20, 300, seed=8)
    plain = make(tokens, doc_offsets=offsets, documents="respect")
    try:
        with_sep = make(tokens, doc_offsets=offsets, documents="respect", separator_id=7)
    except ValueError as e:
        assert "separator_id" in str(e)
        return
    assert with_sep.stream_length == plain.stream_length == tokens.size
    assert [with_sep.span(k) for k in range(len(with_sep))] == [plain.span(k) for k in range(len(plain))]


# ---------------------------------------------------------------------------------------------
# Packed datasets


def test_packed_dataset_rows_hold_consecutive_samples():
    tokens, offsets = documents(300, 80, seed=10, long_first=False)
    mixture = ul2.presets.ul2({"[NLU]": [3], "[NLG]": [4, 5], "[S2S]": [6]})
    ds = make(tokens, mixture, doc_offsets=offsets, documents="respect", sequence_length=256, pack=True)
    assert ds.format == "decoder"
    unpacked = make(tokens, mixture, doc_offsets=offsets, documents="respect", sequence_length=256)
    assert ds.num_samples == unpacked.num_samples
    rows = len(ds)
    assert 0 < rows < ds.num_samples
    ranges = [ds.samples(r) for r in range(rows)]
    assert ranges[0].start == 0 and ranges[-1].stop == ds.num_samples
    assert all(ranges[r].stop == ranges[r + 1].start and len(ranges[r]) > 0 for r in range(rows - 1))
    out = ds.batch(list(range(rows)))
    width = 256
    assert out["input_ids"].shape == (rows, width)
    assert out["denoiser"].shape == (rows, width)
    used = 0
    for r in range(rows):
        seg = out["segment_ids"][r]
        assert int(seg.max()) == len(ranges[r])
        for s, k in enumerate(ranges[r], start=1):
            idx = np.flatnonzero(seg == s)
            assert out["positions"][r, idx].tolist() == list(range(idx.size))
            assert (out["denoiser"][r, idx] == ds.denoiser(k)).all()
            d = mixture.denoisers[ds.denoiser(k)]
            p = int(out["bidirectional_mask"][r, idx].sum())
            seq = out["input_ids"][r, idx].tolist()
            assert (out["labels"][r, idx[p:]] == out["input_ids"][r, idx[p:]]).all()
            a, b = ds.span(k)
            assert invert(d, seq[:p], seq[p:]) == tokens[a:b].tolist(), (r, k)
            used += idx.size
        assert (out["denoiser"][r, seg == 0] == -1).all()
        assert (out["input_ids"][r, seg == 0] == PAD).all()
    assert ds.fill_rate == pytest.approx(used / (rows * width))
    assert 0 < ds.fill_rate <= 1
    # A packed item is the batch row; cu_seqlens of one row ends at its width.
    item = ds[1]
    assert np.array_equal(item["input_ids"], out["input_ids"][1])
    assert item["cu_seqlens"][-1] == width


# ---------------------------------------------------------------------------------------------
# Determinism (SPEC §6)


SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    import ul2
    seed = int(sys.argv[1])
    tokens = np.random.default_rng(0).integers(2, 32000, 30000).astype(np.int32)
    ds = ul2.DenoisingDataset(tokens, ul2.presets.ul2(), sentinels=ul2.Sentinels.t5(32228, 128),
                              inputs_length=512, targets_length=512, seed=seed)
    out = ds.batch(list(range(len(ds))))
    blob = b"".join(name.encode() + np.ascontiguousarray(out[name]).tobytes() for name in sorted(out))
    print(hashlib.sha256(blob).hexdigest())
""")


def in_process_digest(seed: int) -> str:
    ds = make(stream(30_000), seed=seed)
    return hashlib.sha256(batch_bytes(ds.batch(list(range(len(ds)))))).hexdigest()


def test_same_seed_same_bytes_in_a_fresh_process():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, "17"], capture_output=True, text=True, check=True, timeout=120
    )
    assert proc.stdout.strip() == in_process_digest(17)
    assert in_process_digest(18) != in_process_digest(17)


def test_different_seed_gives_different_samples():
    a, b = make(stream(30_000), seed=1), make(stream(30_000), seed=2)
    assert [a.denoiser(k) for k in range(20)] != [b.denoiser(k) for k in range(20)]


def test_thread_count_does_not_change_bytes():
    ds = make(stream(60_000), seed=3)
    keys = list(range(len(ds)))
    try:
        ul2.set_num_threads(1)
        one = batch_bytes(ds.batch(keys))
        ul2.set_num_threads(2)
        two = batch_bytes(ds.batch(keys))
    finally:
        ul2.set_num_threads(None)
    assert one == two
    # Batch composition does not matter either.
    halves = [ds.batch(keys[: len(keys) // 2]), ds.batch(keys[len(keys) // 2 :])]
    whole = ds.batch(keys)
    for name in whole:
        assert np.array_equal(np.concatenate([h[name] for h in halves]), whole[name])


# ---------------------------------------------------------------------------------------------
# Errors (SPEC §8.7)


def test_bad_documents_value():
    with pytest.raises(ValueError, match="documents"):
        make(stream(5000), doc_offsets=[0, 2500, 5000], documents="bogus")


@pytest.mark.parametrize(
    "offsets",
    [[0, 3000, 2000, 5000], [0, 2500, 5001], [100, 2500, 5000]],
    ids=["decreasing", "past-the-end", "not-from-0"],
)
@pytest.mark.parametrize("documents_mode", ["concat", "respect"])
def test_bad_doc_offsets(offsets, documents_mode):
    with pytest.raises(ValueError, match="doc_offsets"):
        make(stream(5000), doc_offsets=offsets, documents=documents_mode)


def test_keys_out_of_range():
    ds = make(stream(20_000))
    n = len(ds)
    for bad in (n, n + 100):
        with pytest.raises(IndexError):
            ds[bad]
        with pytest.raises(IndexError):
            ds.batch([0, bad])
        with pytest.raises(IndexError):
            ds.span(bad)
        with pytest.raises(IndexError):
            ds.denoiser(bad)
    with pytest.raises(IndexError):
        ds[-n - 1]
    with pytest.raises((IndexError, ValueError), match="keys"):
        ds.batch([-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_tokens(dtype):
    with pytest.raises(TypeError, match="tokens"):
        make(stream(5000).astype(dtype))


def test_two_dimensional_tokens():
    with pytest.raises((ValueError, TypeError), match="tokens"):
        make(stream(5000).reshape(50, 100))


def test_respect_mode_refuses_documents_too_short_for_num_spans_at_construction():
    # A document's short last sample cannot hold num_spans spans: say so when building,
    # naming the sample, rather than failing later at ds[k].
    with pytest.raises(ValueError, match=r"documents='respect': sample 0 \(8 tokens"):
        ul2.DenoisingDataset(
            np.arange(3, 13, dtype=np.int32),
            ul2.SpanCorruption(3, 0.15, num_spans=2),
            sentinels=ul2.Sentinels.t5(1000),
            doc_offsets=[0, 8, 10],
            documents="respect",
            inputs_length=16,
        )


# ---------------------------------------------------------------------------------------------
# Pickling over memmap views (a spawned DataLoader / Grain worker, prepare(engine="ray"))


@pytest.fixture(scope="module")
def spawn_pool():
    """One real child process started by spawn: it gets datasets only by unpickling them."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield pool


@pytest.fixture(scope="module")
def memmaps(tmp_path_factory):
    """The same 60,000 uint16 tokens memory-mapped three ways: a plain file, an .npy file (a
    128-byte header: offset 128) and a raw file opened at a byte offset that is not a page's."""
    tokens = stream(60_000).astype(np.uint16)
    root = tmp_path_factory.mktemp("memmaps")
    tokens.tofile(root / "plain.u16")
    np.save(root / "tokens.npy", tokens)
    with open(root / "offset.u16", "wb") as f:
        f.write(b"\xab" * 6002)
        tokens.tofile(f)
    return tokens, {
        "plain": lambda: np.memmap(root / "plain.u16", dtype=np.uint16, mode="r"),
        "npy": lambda: np.load(root / "tokens.npy", mmap_mode="r"),
        "offset": lambda: np.memmap(root / "offset.u16", dtype=np.uint16, mode="r", offset=6002),
    }


# Contiguous, then strided (read in place through their strides).
VIEWS = {
    "mm[5000:]": lambda mm: mm[5000:],
    "mm[3:-7]": lambda mm: mm[3:-7],
    "mm[10:][2000:-1]": lambda mm: mm[10:][2000:-1],
    "mm[::3]": lambda mm: mm[::3],
    "mm[10:][::2]": lambda mm: mm[10:][::2],
    "mm[::-1]": lambda mm: mm[::-1],
    "mm[-5:100:-2]": lambda mm: mm[-5:100:-2],
}


@pytest.mark.parametrize("parent", ["plain", "npy", "offset"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_a_memmap_view_pickles_to_the_same_view(memmaps, spawn_pool, parent, view):
    tokens, open_parent = memmaps
    v = VIEWS[view](open_parent[parent]())
    assert np.array_equal(v, VIEWS[view](tokens))
    ref = ul2.dataset._memmap_ref(v)
    assert ref is not None, "a memmap view travels by reference"
    restored = pickle.loads(pickle.dumps(ref)).open()
    assert isinstance(restored, np.memmap)
    assert (restored.dtype, restored.shape, restored.strides) == (v.dtype, v.shape, v.strides)
    assert np.array_equal(restored, v)
    assert ul2.dataset._memmap_ref(restored) == ref  # and travels on unchanged
    assert np.array_equal(spawn_pool.apply(ref.open), v)  # opened by a spawned process


@pytest.mark.parametrize("parent", ["plain", "npy", "offset"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_a_dataset_over_a_memmap_view_gives_the_same_bytes_after_pickling(memmaps, spawn_pool, parent, view):
    _, open_parent = memmaps
    v = VIEWS[view](open_parent[parent]())
    ds = make(v, seed=3)
    keys = list(range(0, len(ds), 7))
    want = batch_bytes(ds.batch(keys))
    payload = pickle.dumps(ds)
    assert len(payload) < 8192  # the file name and the view, not 120 kB of tokens
    restored = pickle.loads(payload)
    assert np.array_equal(restored.tokens, v)
    assert batch_bytes(restored.batch(keys)) == want
    assert batch_bytes(spawn_pool.apply(operator.methodcaller("batch", keys), (ds,))) == want
    assert np.array_equal(spawn_pool.apply(operator.attrgetter("tokens"), (ds,)), v)


def test_a_copy_on_write_memmap_travels_by_value(memmaps):
    # Its writes live only in this process's pages, not in the file.
    cow = np.memmap(memmaps[1]["plain"]().filename, dtype=np.uint16, mode="c")
    cow[:100] = 7
    assert ul2.dataset._memmap_ref(cow[5:]) is None
    assert np.array_equal(pickle.loads(pickle.dumps(make(cow[5:]))).tokens, cow[5:])


# ---------------------------------------------------------------------------------------------
# Non-array input is snapshotted once


def test_list_tokens_are_converted_once_and_later_edits_change_nothing():
    values = stream(300_000).tolist()
    ds = make(values, format="seqio", seed=2)
    want = make(np.asarray(values), format="seqio", seed=2)
    keys = [0, len(ds) // 2, len(ds) - 1]
    assert isinstance(ds.tokens, np.ndarray) and not ds.tokens.flags.writeable
    # Each access reads the one array: no conversion of the 300,000-item list (2.4 MB) per item.
    tracemalloc.start()
    try:
        ds[len(ds) - 1]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300_000 * 8 // 10, peak
    values[: len(values) // 2] = [5] * (len(values) // 2)  # edited ...
    del values[1000:]  # ... and shrunk (it used to read past the end)
    assert batch_bytes(ds.batch(keys)) == batch_bytes(want.batch(keys))
    assert batch_bytes(pickle.loads(pickle.dumps(ds)).batch(keys)) == batch_bytes(want.batch(keys))


def test_list_doc_offsets_are_snapshotted_once():
    tokens, offsets = documents(60, 1500, seed=5)
    starts = offsets.tolist()
    ds = make(tokens, doc_offsets=starts, documents="respect")
    keys = list(range(len(ds)))
    want = batch_bytes(ds.batch(keys))
    starts[5] = starts[4]
    del starts[30:]  # another index, if anything still read the list
    assert batch_bytes(ds.batch(keys)) == want
    assert batch_bytes(pickle.loads(pickle.dumps(ds)).batch(keys)) == want


# ---------------------------------------------------------------------------------------------
# ds.plan() is the plan the dataset uses


def _with_causal(m: ul2.Mixture) -> ul2.Mixture:
    return ul2.Mixture([*m.entries, (ul2.CausalLM(), 1.0)])


PLAN_MIXTURES = {
    **{name: getattr(ul2.presets, name)() for name in ("t5", "ul2", "ul2_paper", "ul2r")},
    **{f"{name}+CausalLM": _with_causal(getattr(ul2.presets, name)()) for name in ("t5", "ul2", "ul2r")},
    # Targets far wider than the inputs: the resolved targets width is not the budget.
    "X(64,0.9)+CausalLM": ul2.Mixture([(ul2.SpanCorruption(64, 0.9), 1.0), (ul2.CausalLM(), 1.0)]),
}
BUDGETS = {
    "inputs": dict(inputs_length=512),
    "inputs+targets": dict(inputs_length=512, targets_length=512),
    "sequence": dict(sequence_length=512),
}


@pytest.mark.parametrize("budget", list(BUDGETS))
@pytest.mark.parametrize("mixture", list(PLAN_MIXTURES))
def test_plan_is_the_plan_the_dataset_uses(mixture, budget):
    m = PLAN_MIXTURES[mixture]
    ds = ul2.DenoisingDataset(stream(20_000), m, sentinels=SENTINELS, **BUDGETS[budget])
    assert [r.raw_length for r in ds.plan()] == ds.raw_lengths
    assert ds.budget == {
        "inputs_length": None,
        "targets_length": None,
        "sequence_length": None,
        **BUDGETS[budget],
    }
    rebuilt = ul2.DenoisingDataset(stream(20_000), m, sentinels=SENTINELS, **ds.budget)
    assert rebuilt.raw_lengths == ds.raw_lengths and rebuilt.targets_length == ds.targets_length
