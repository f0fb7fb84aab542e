"""``ul2.DenoisingDataset`` (SPEC §1 sampler / index, §6 determinism, §8.5-8.7): samples tile
the stream exactly, use their denoiser's planned raw length, lose no token (round trip), respect
document boundaries or join documents with a separator, pack consecutive samples, are the same
whatever the batching or process (thread counts are in test_robustness.py), and bad arguments
raise errors naming them."""

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
from ul2 import testing

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
        testing.check_example(tokens[a:b], inputs, targets, mixture.denoisers[j], sentinels=SENTINELS)
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
        testing.check_example(tokens[a:b], inputs, targets, d, sentinels=SENTINELS)


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
        d = mixture.denoisers[int(out["denoiser"][k])]
        testing.check_example(tokens[a:b], inputs, targets, d, sentinels=SENTINELS)


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
        testing.check_example(
            joined[a:b], inputs, targets, mixture.denoisers[int(out["denoiser"][k])], sentinels=SENTINELS
        )
        seps += int((joined[a:b] == sep).sum())
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
            testing.check_example(tokens[a:b], seq[:p], seq[p:], d, sentinels=SENTINELS)
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


# ---------------------------------------------------------------------------------------------
# Bad inputs (SPEC §8.7), and the accepted edges next to them
# ---------------------------------------------------------------------------------------------

VOCAB = 32100
S = ul2.Sentinels.t5(VOCAB)
NO_VOCAB = ul2.Sentinels.from_ids(list(range(1000, 1100)))  # ids bounded only by the dtype
T5 = ul2.presets.t5()
TOKENS = np.arange(2, 20_002, dtype=np.int32)  # ordinary ids: never pad, EOS or a sentinel


def ds(tokens=None, mixture=None, **kw) -> ul2.DenoisingDataset:
    kw.setdefault("sentinels", S)
    if "sequence_length" not in kw:
        kw.setdefault("inputs_length", 512)
    return ul2.DenoisingDataset(
        TOKENS if tokens is None else tokens, T5 if mixture is None else mixture, **kw
    )


def with_token(value: int, dtype=np.int64, at: int = 100) -> np.ndarray:
    t = TOKENS.astype(dtype)
    t[at] = value
    return t


GOOD = ds()
PACKED = ds(sequence_length=256, pack=True)
BAD = testing.BadInputs()
add = BAD.add


# ---- DenoisingDataset(tokens=...) ------------------------------------------------------------
# (float32/float64 and 2-D tokens: test_float_tokens, test_two_dimensional_tokens above)
for dt in [np.float16, np.bool_, object, np.int8, np.int16, np.uint8, np.uint64, np.complex64]:
    add(f"ds-tokens-dtype={np.dtype(dt)}", lambda dt=dt: ds(TOKENS.astype(dt)), TypeError, "tokens", "dtype")
add("ds-tokens-0d-array", lambda: ds(np.array(5, np.int32)), (TypeError, ValueError), "tokens")
add("ds-tokens-numpy-scalar", lambda: ds(np.int32(5)), (TypeError, ValueError), "tokens")
add("ds-tokens-3d", lambda: ds(TOKENS.reshape(2, 2, -1)), ValueError, "tokens")
add("ds-tokens-str", lambda: ds("some text"), TypeError, "tokens")
add("ds-tokens-bytes", lambda: ds(b"\x01\x02"), TypeError, "tokens")
add(
    "ds-tokens-None",
    lambda: ul2.DenoisingDataset(None, T5, sentinels=S, inputs_length=512),
    TypeError,
    "tokens",
)
add("ds-tokens-object", lambda: ds(object()), TypeError, "tokens")
add("ds-tokens-dict", lambda: ds({"input_ids": TOKENS}), TypeError, "tokens")
add("ds-tokens-float-list", lambda: ds([2.0, 3.0, 4.0]), TypeError, "tokens")
add("ds-tokens-int-too-big-list", lambda: ds([2, 3, 2**64]), (TypeError, ValueError), "tokens")
# Token values are checked when examples are made (a memmap is never scanned up front); the
# error must still name the dataset's argument and the value.
add("ds-tokens-negative", lambda: ds(with_token(-5)).batch([0]), ValueError, "tokens", "-5")
add("ds-tokens>=vocab", lambda: ds(with_token(VOCAB + 7)).batch([0]), ValueError, "tokens", str(VOCAB + 7))
add("ds-tokens-collision", lambda: ds(with_token(VOCAB - 2)).batch([0]), ValueError, "tokens", str(VOCAB - 2))
add(
    "ds-tokens>int32-for-int32-output",
    lambda: ds(with_token(2**31), sentinels=NO_VOCAB).batch([0]),
    ValueError,
    "tokens",
    str(2**31),
)
add(
    "ds-tokens-uint32>int32-for-int32-output",
    lambda: ds(with_token(2**32 - 1, np.uint32), sentinels=NO_VOCAB)[0],
    ValueError,
    "tokens",
    str(2**32 - 1),
)

# ---- DenoisingDataset(doc_offsets=, documents=, separator_id=) ---------------------------
# (decreasing / past-the-end / not-from-0 offsets and documents="bogus": test_bad_doc_offsets above)
add("ds-doc_offsets-float", lambda: ds(doc_offsets=[0.0, 5000.0, 20000.0]), TypeError, "doc_offsets")
add("ds-doc_offsets-2d", lambda: ds(doc_offsets=[[0, 20000]]), ValueError, "doc_offsets")
add("ds-doc_offsets-negative", lambda: ds(doc_offsets=[0, -3, 20000]), ValueError, "doc_offsets")
add("ds-doc_offsets-str", lambda: ds(doc_offsets="0,100"), TypeError, "doc_offsets")
add("ds-doc_offsets-only-end", lambda: ds(doc_offsets=[20000]), ValueError, "doc_offsets")
add("ds-documents=int", lambda: ds(documents=1), TypeError, "documents")
add("ds-documents=None", lambda: ds(documents=None), TypeError, "documents")
add("ds-documents=Concat", lambda: ds(documents="Concat"), ValueError, "documents")
add(
    "ds-separator_id=-1", lambda: ds(doc_offsets=[0, 100, 20000], separator_id=-1), ValueError, "separator_id"
)
add(
    "ds-separator_id=float",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id=7.0),
    TypeError,
    "separator_id",
)
add(
    "ds-separator_id=str",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id="7"),
    TypeError,
    "separator_id",
)
add(
    "ds-separator_id=2**64",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id=2**64),
    ValueError,
    "separator_id",
)
add(
    "ds-separator_id-too-big-for-uint16-tokens",
    lambda: ds(TOKENS.astype(np.uint16), doc_offsets=[0, 100, 20000], separator_id=70_000),
    ValueError,
    "separator_id",
)
add(
    "ds-separator_id-respect",
    lambda: ds(doc_offsets=[0, 100, 20000], documents="respect", separator_id=7),
    ValueError,
    "separator_id",
)
# A separator equal to a sentinel id makes every joined sample ambiguous: name it.
add(
    "ds-separator_id-is-a-sentinel",
    lambda: ds(doc_offsets=[0, 100, 20000], separator_id=VOCAB - 1).batch([0]),
    ValueError,
    "separator_id",
)

# ---- DenoisingDataset budgets, format and options -------------------------------------------
add("ds-no-budget", lambda: ds(inputs_length=None), ValueError, "inputs_length")
for v in (0, 1, -1):
    add(f"ds-inputs_length={v}", lambda v=v: ds(inputs_length=v), ValueError, "inputs_length")
    add(f"ds-sequence_length={v}", lambda v=v: ds(sequence_length=v), ValueError, "sequence_length")
add("ds-inputs_length=float", lambda: ds(inputs_length=512.0), TypeError, "inputs_length")
add("ds-inputs_length=bool", lambda: ds(inputs_length=True), TypeError, "inputs_length")
add("ds-inputs_length=2**64", lambda: ds(inputs_length=2**64), ValueError, "inputs_length")
add("ds-sequence_length=float", lambda: ds(sequence_length=512.0), TypeError, "sequence_length")
add("ds-sequence_length=str", lambda: ds(sequence_length="512"), TypeError, "sequence_length")
add("ds-targets_length=1", lambda: ds(targets_length=1), ValueError, "targets_length")
add("ds-targets_length=-1", lambda: ds(targets_length=-1), ValueError, "targets_length")
add("ds-both-budgets", lambda: ds(sequence_length=1024, inputs_length=512), ValueError, "sequence_length")
add(
    "ds-targets-with-sequence",
    lambda: ds(sequence_length=1024, inputs_length=None, targets_length=100),
    ValueError,
    "sequence_length",
)
add("ds-format=tf", lambda: ds(format="tf"), ValueError, "format")
add("ds-format=int", lambda: ds(format=1), TypeError, "format")
add("ds-format=hf-with-sequence_length", lambda: ds(sequence_length=512, format="hf"), ValueError, "format")
add("ds-format=decoder-with-inputs_length", lambda: ds(format="decoder"), ValueError, "format")
add("ds-format=seqio_decoder-with-inputs", lambda: ds(format="seqio_decoder"), ValueError, "format")
add("ds-seed=-1", lambda: ds(seed=-1), ValueError, "seed")
add("ds-seed=2**64", lambda: ds(seed=2**64), ValueError, "seed")
add("ds-seed=float", lambda: ds(seed=1.0), TypeError, "seed")
add("ds-seed=None", lambda: ds(seed=None), TypeError, "seed")
add("ds-eos_id=-1", lambda: ds(eos_id=-1), ValueError, "eos_id")
add("ds-eos_id=float", lambda: ds(eos_id=1.0), TypeError, "eos_id")
add("ds-eos_id>int32", lambda: ds(eos_id=2**31), ValueError, "eos_id")
add("ds-pad_id=-1", lambda: ds(pad_id=-1), ValueError, "pad_id")
add("ds-pad_id=None", lambda: ds(pad_id=None), TypeError, "pad_id")
add("ds-pad_id>int32", lambda: ds(pad_id=2**31), ValueError, "pad_id")
add("ds-pack=int", lambda: ds(pack=1), TypeError, "pack")
add("ds-pack=None", lambda: ds(pack=None), TypeError, "pack")
add("ds-bidirectional_mask=str", lambda: ds(bidirectional_mask="yes"), TypeError, "bidirectional_mask")
for dt in [np.float32, np.uint32, np.int16, "bogus"]:
    add(f"ds-dtype={dt}", lambda dt=dt: ds(dtype=dt), TypeError, "dtype")
add("ds-sentinels=None", lambda: ds(sentinels=None), TypeError, "sentinels")
add("ds-sentinels=list", lambda: ds(sentinels=[32099, 32098]), TypeError, "sentinels")
add("ds-sentinels>int32", lambda: ds(sentinels=ul2.Sentinels.t5(2**32)), ValueError, "sentinels")
add("ds-mixture=str", lambda: ds(mixture="ul2"), TypeError, "mixture")
add("ds-mixture=empty", lambda: ds(mixture=[]), ValueError, "mixture")
add(
    "ds-mixture=None",
    lambda: ul2.DenoisingDataset(TOKENS, None, sentinels=S, inputs_length=512),
    TypeError,
    "mixture",
)
add("ds-mixture=int", lambda: ds(mixture=0), TypeError, "mixture")
add(
    "ds-mixture-257-denoisers",  # the index stores a byte per sample
    lambda: ds(mixture=[(ul2.CausalLM(), 1.0)] * 257),
    ValueError,
    "mixture",
)
add(
    "ds-overflow",
    lambda: ds(mixture=ul2.presets.ul2()),
    ul2.SentinelOverflowError,
    "sentinels",
    "100",
)
add(
    "ds-overflow-decoder",
    lambda: ds(mixture=ul2.presets.ul2(), sequence_length=1024),
    ul2.SentinelOverflowError,
    "sentinels",
)
add(
    "ds-prompt-longer-than-budget",
    lambda: ds(mixture=ul2.SpanCorruption(3.0, 0.15, prefix=range(2, 600))),
    ValueError,
    "inputs_length",
)
add(
    "ds-r>.5-small-mu",
    lambda: ds(mixture=ul2.SpanCorruption(1.0, 0.9)),
    ValueError,
    "noise_density",
)

# ---- DenoisingDataset methods ----------------------------------------------------------------
# (out-of-range positions and batch([-1]): test_keys_out_of_range above)
add("ds[str]", lambda: GOOD["0"], TypeError, "k=")
add("ds[None]", lambda: GOOD[None], TypeError, "k=")
add("ds[float]", lambda: GOOD[1.5], TypeError, "k=")
add("ds[2**70]", lambda: GOOD[2**70], IndexError, "k=")
add("ds.span(float)", lambda: GOOD.span(1.5), TypeError, "k=")
add("ds.span(str)", lambda: GOOD.span("1"), TypeError, "k=")
add("ds.span(2**70)", lambda: GOOD.span(2**70), (IndexError, ValueError), "k=")
add("ds.denoiser(float)", lambda: GOOD.denoiser(0.0), TypeError, "k=")
add("ds.denoiser(-2**70)", lambda: GOOD.denoiser(-(2**70)), (IndexError, ValueError), "k=")
add("ds.samples(float)", lambda: PACKED.samples(1.0), TypeError, "r=")
add("ds.samples(2**70)", lambda: PACKED.samples(2**70), (IndexError, ValueError), "r=")
add("ds.samples(out-of-range)", lambda: PACKED.samples(len(PACKED)), IndexError, "r=")
add("ds.batch(empty)", lambda: GOOD.batch([]), (TypeError, ValueError), "keys")
add("ds.batch(empty-array)", lambda: GOOD.batch(np.array([], np.int64)), ValueError, "keys")
add("ds.batch(2d)", lambda: GOOD.batch([[0, 1]]), ValueError, "keys")
add("ds.batch(0d)", lambda: GOOD.batch(np.array(3)), ValueError, "keys")
add("ds.batch(float)", lambda: GOOD.batch([0.5]), TypeError, "keys")
add("ds.batch(bool)", lambda: GOOD.batch([True, False]), TypeError, "keys")
add("ds.batch(str)", lambda: GOOD.batch("0"), TypeError, "keys")
add("ds.batch(None)", lambda: GOOD.batch(None), TypeError, "keys")
add("ds.batch(int)", lambda: GOOD.batch(3), TypeError, "keys")
add("ds.batch(2**64)", lambda: GOOD.batch([2**64]), (TypeError, ValueError, IndexError), "keys")
add("ds.batch(uint64-huge)", lambda: GOOD.batch(np.array([2**63], np.uint64)), IndexError, "keys")
add("ds.batch(packed-row-out-of-range)", lambda: PACKED.batch([len(PACKED)]), IndexError, "keys")


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_input(case: testing.BadInput) -> None:
    case.check()


def test_tiny_streams_are_accepted():
    for n in (0, 1, 2, 3):
        tokens = np.arange(10, 10 + n, dtype=np.int32)
        concat = ds(tokens)
        assert concat.num_samples == 0 and concat.tail == n and len(concat) == 0
        with pytest.raises(IndexError):
            concat[0]
        if n == 0:
            continue
        respect = ds(tokens, documents="respect", doc_offsets=[0, n])
        assert respect.num_samples == 1 and respect.tail == 0 and respect.span(0) == (0, n)
        ((inputs, targets),) = testing.rows(respect, respect.batch([0]))
        testing.check_example(tokens, inputs, targets, T5.denoisers[0], sentinels=S)


def test_strided_read_only_and_list_tokens():
    """A strided view, a read-only array and a Python list are read as the equivalent
    contiguous array."""
    base = np.arange(2, 2 + 2 * 6000, dtype=np.int32)
    contiguous = ds(np.ascontiguousarray(base[::2]))
    want = contiguous.batch(list(range(len(contiguous))))
    strided = ds(base[::2])
    got = strided.batch(list(range(len(strided))))
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    ro = np.ascontiguousarray(base[::2])
    ro.flags.writeable = False
    as_list = ds(base[::2].tolist(), dtype=np.int32)
    for other in (ds(ro), as_list):
        got = other.batch(list(range(len(other))))
        for name in want:
            np.testing.assert_array_equal(got[name], want[name])


def test_offsets_of_any_integer_dtype_are_read_alike():
    """doc_offsets in int32/int64/uint16/uint32 (and uint64, or a TypeError naming doc_offsets)."""
    offsets = [0, 3000, 3000, 7000, 20000]
    want = ds(doc_offsets=offsets, documents="respect")
    spans = [want.span(k) for k in range(want.num_samples)]
    for dt in (np.int32, np.int64, np.uint16, np.uint32, np.uint64):
        try:
            got = ds(doc_offsets=np.array(offsets, dt), documents="respect")
        except TypeError as e:
            assert dt == np.uint64 and "doc_offsets" in str(e)
            continue
        assert [got.span(k) for k in range(got.num_samples)] == spans
