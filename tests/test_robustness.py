"""Issue 7, parts 2, 4 and 5: no panic crosses the FFI boundary; the same seed gives the same
bytes under threads, thread counts, batch splits, DataLoader-style workers (fork and spawn),
pickling into a new process and resumption; every token of a stream is used once or reported
in the tail; a million small calls keep resident memory flat; a 10^8-token batch works; every
file's bad inputs raise their errors in a child process, and absurd sizes and failed allocations
are errors, not aborts.

The long variants (4 x 10^6 calls, an int64 packed 10^8-token batch) run with ``UL2_FUZZ=1``
(``make fuzz``); the default suite runs 10^6 calls and one 10^8-token batch.
"""

from __future__ import annotations

import ast
import hashlib
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import ul2
from ul2 import testing

LONG = bool(os.environ.get("UL2_FUZZ"))
VOCAB = 1_000_000  # sentinels 999_999 down; stream ids 10 + position never reach them
SENTINELS = ul2.Sentinels.t5(VOCAB, 200)
SENTINEL_SET = frozenset(SENTINELS.ids.tolist())
EOS, PAD, SEP = 1, 0, 5
PROMPTS = {"[NLU]": [2], "[NLG]": [3], "[S2S]": [4]}
MIXTURE = ul2.Mixture([*ul2.presets.ul2(PROMPTS).entries, (ul2.CausalLM(prefix=(6,)), 1.0)])
FORMATS = {"hf": "enc", "seqio": "enc", "decoder": "dec", "seqio_decoder": "dec"}
ENC = dict(inputs_length=256, targets_length=256)
DEC = dict(sequence_length=512)


def budget(fmt: str) -> dict[str, int]:
    return ENC if FORMATS[fmt] == "enc" else DEC


def documents(n_docs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unique ids (10 + position) split into documents, among them an empty and a 1-token one."""
    lens = np.random.default_rng(seed).integers(0, 1500, n_docs)
    lens[:3] = [2500, 0, 1]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return np.arange(10, 10 + offsets[-1], dtype=np.int32), offsets


TOKENS, OFFSETS = documents(50, seed=1)


def dataset(fmt: str = "hf", pack: bool = False, tokens=None, **kw) -> ul2.DenoisingDataset:
    return ul2.DenoisingDataset(
        TOKENS if tokens is None else tokens,
        MIXTURE,
        sentinels=SENTINELS,
        format=fmt,
        pack=pack,
        **budget(fmt),
        **kw,
    )


def collator(fmt: str = "hf", pack: bool = False, **kw) -> ul2.Collator:
    return ul2.Collator(MIXTURE, sentinels=SENTINELS, format=fmt, pack=pack, **budget(fmt), **kw)


# Longest row every denoiser accepts under both budgets (a Collator refuses longer rows).
ROW_MAX = min(min(r.raw_length for r in ul2.plan(MIXTURE, sentinels=SENTINELS, **b)) for b in (ENC, DEC))


def user_rows(n: int, seed: int = 0) -> list[np.ndarray]:
    """Rows a user would hand a Collator: slices of the stream, 0 to ROW_MAX tokens long."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, TOKENS.size - ROW_MAX, n)
    return [TOKENS[a : a + int(m)] for a, m in zip(starts, rng.integers(0, ROW_MAX + 1, n), strict=True)]


def batch_bytes(out: dict[str, np.ndarray]) -> bytes:
    return b"".join(
        name.encode() + str(out[name].dtype).encode() + str(out[name].shape).encode() + out[name].tobytes()
        for name in sorted(out)
    )


def digest(out: dict[str, np.ndarray]) -> str:
    return hashlib.sha256(batch_bytes(out)).hexdigest()


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------------------------------------
# 2. No panic crosses FFI
# ---------------------------------------------------------------------------------------------

# Inputs that reach (or reached) ul2_core::Error::Internal from Python. Found by reading every
# `Error::Internal` of the core: `SampleIndex::build` (raw lengths vs mixture: the bindings always
# plan every denoiser, raw >= 1, so unreachable) and `format` (family vs format: checked when the
# Collator is built, unreachable); `denoise_rows` (keys vs examples vs bins) is reached by a dense
# [B, 0] batch, whose `Rows::len` is 0 while B keys are made, and by a key counter that wraps at
# 2**64 (an empty key range).
INTERNAL = textwrap.dedent(
    """
    import numpy as np, ul2
    from ul2.collate import _restore_collator
    c = ul2.Collator(ul2.presets.t5(), sentinels=ul2.Sentinels.t5(32100), inputs_length=512)
    seen = []
    def attempt(name, f):
        try:
            f()
            seen.append((name, "ok", ""))
        except RuntimeError as e:
            seen.append((name, "RuntimeError", str(e)))
        except ValueError as e:
            seen.append((name, "ValueError", str(e)))
    attempt("zero-width", lambda: c(np.zeros((3, 0), np.int32)))
    attempt("zero-width-packed", lambda: ul2.Collator(ul2.presets.t5(), sentinels=ul2.Sentinels.t5(32100),
            inputs_length=512, pack=True)(np.zeros((2, 0), np.int64)))
    wrapped = _restore_collator(c.mixture, c._args, 2**64 - 1)
    attempt("key-counter-wrap", lambda: wrapped(np.full((2, 10), 7, np.int32)))
    # The collator still works after every failure (no poisoned lock or pool).
    out = c(np.full((2, 10), 7, np.int32), keys=[0, 1])
    assert out["input_ids"].shape == (2, 512)
    print(repr(seen))
    """
)


def test_internal_errors_surface_as_python_exceptions_not_panics():
    """Drives the core's internal-error paths that Python can reach (in a child, so a panic or
    abort cannot take pytest down): each ends in a normal result, a ValueError naming the
    argument, or RuntimeError('internal error (please report): ...'); never a PanicException,
    never an abort; and the collator still works afterwards."""
    r = subprocess.run([sys.executable, "-c", INTERNAL], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PanicException" not in r.stderr
    seen = ast.literal_eval(r.stdout.strip())  # a list of (name, outcome, message) tuples
    assert [s[0] for s in seen] == ["zero-width", "zero-width-packed", "key-counter-wrap"]
    for name, outcome, msg in seen:
        if outcome == "RuntimeError":
            assert msg.startswith("internal error (please report): "), (name, msg)
        elif outcome == "ValueError":
            assert "rows" in msg or "key" in msg, (name, msg)


def test_the_key_counter_never_wraps():
    """The running key counter ends at 2**64 - 1: a call that would need keys past it is a
    ValueError naming the keys (and leaves the counter alone), not a wrap to key 0."""
    from ul2.collate import _restore_collator  # what unpickling a saved collator calls

    c = ul2.Collator(ul2.presets.t5(), sentinels=ul2.Sentinels.t5(32100), inputs_length=512)
    rows = np.full((2, 10), 7, np.int32)
    late = _restore_collator(c.mixture, c._args, 2**64 - 3)
    assert_same(late(rows), c(rows, keys=[2**64 - 3, 2**64 - 2]))
    assert late.next_key == 2**64 - 1
    with pytest.raises(ValueError, match="key"):
        late(rows)
    assert late.next_key == 2**64 - 1


# ---------------------------------------------------------------------------------------------
# 4. Concurrency and determinism
# ---------------------------------------------------------------------------------------------


def test_eight_threads_share_one_collator_and_one_dataset():
    """8 Python threads call one Collator (plain and packed) and one DenoisingDataset (plain and
    packed) at once, in different orders; every result equals the sequential one."""
    ds, packed_ds = dataset("hf"), dataset("decoder", pack=True)
    c, packed_c = collator("seqio"), collator("decoder", pack=True)
    rows = user_rows(40)
    rng = np.random.default_rng(7)
    jobs: list[tuple[str, np.ndarray]] = []
    for _ in range(96):
        kind = ["ds", "packed_ds", "c", "packed_c", "item"][int(rng.integers(5))]
        n = {"ds": ds.num_samples, "packed_ds": len(packed_ds), "item": ds.num_samples}.get(kind, len(rows))
        jobs.append((kind, rng.choice(n, size=int(rng.integers(1, 12)), replace=kind in ("ds", "packed_ds"))))

    def run(kind: str, ids: np.ndarray) -> dict[str, np.ndarray]:
        if kind == "ds":
            return ds.batch(ids)
        if kind == "packed_ds":
            return packed_ds.batch(ids)
        if kind == "item":
            return ds[int(ids[0])]
        target = c if kind == "c" else packed_c
        return target([rows[i] for i in ids], keys=ids * 1009 + 3)

    expected = [run(*job) for job in jobs]
    n_threads = 8
    got: list[dict[int, dict[str, np.ndarray]]] = [{} for _ in range(n_threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def worker(t: int) -> None:
        try:
            barrier.wait(30)
            order = np.random.default_rng(t).permutation(len(jobs))  # each thread its own order
            for j in order:
                got[t][int(j)] = run(*jobs[j])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    for t in range(n_threads):
        assert len(got[t]) == len(jobs)
        for j, want in enumerate(expected):
            assert_same(got[t][j], want)


@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("pack", [False, True], ids=["plain", "packed"])
def test_thread_counts_and_batch_splits_give_identical_bytes(fmt, pack):
    """SPEC §8.5 in-process: 1, 2, 8 (more than cores) and None (all cores) threads give the same
    bytes, for a Collator and a DenoisingDataset in every format, packed or not; under each,
    random splits of the keys into batches (sizes 1 .. all) concatenate to the one batch, and so
    do one-row Collator calls. Worker processes are the next test."""
    ds = dataset(fmt, pack)
    c = collator(fmt, pack)
    rows = user_rows(64, 1)
    keys = np.arange(64) * 31 + 5
    results = {}
    for n in (1, 2, 8, None):
        ul2.set_num_threads(n)
        if n is not None:
            assert ul2.get_num_threads() == n
        rng = np.random.default_rng(11)
        order = rng.permutation(len(ds))
        whole = ds.batch(order)
        for _ in range(4):
            cuts = np.sort(rng.choice(np.arange(1, len(order)), size=int(rng.integers(1, 12)), replace=False))
            parts = [ds.batch(p) for p in np.split(order, cuts)]
            for name in whole:
                if name.endswith("cu_seqlens"):
                    continue  # offsets into each batch's own flattened rows
                np.testing.assert_array_equal(
                    np.concatenate([p[name] for p in parts]), whole[name], err_msg=name
                )
        out = c(rows, keys=keys)
        if not pack:
            singles = [c([rows[i]], keys=keys[i : i + 1]) for i in range(len(rows))]
            for name in out:
                np.testing.assert_array_equal(
                    np.concatenate([s[name] for s in singles]), out[name], err_msg=name
                )
        results[n] = (batch_bytes(ds.batch(np.arange(len(ds)))), batch_bytes(whole), batch_bytes(out))
    assert len(set(results.values())) == 1, "thread count changed the bytes"


# The worker side of the DataLoader-free worker simulation; written to a file so that spawned
# children can import it (pytest's importlib mode makes this test module unimportable there).
WORKER = textwrap.dedent(
    """
    import hashlib
    import numpy as np
    import ul2

    def batch_bytes(out):
        return b"".join(
            name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()
            for name, a in sorted(out.items())
        )

    def work(q, worker, n_workers, datasets, c, rows, batches, threads):
        # DataLoader semantics: batch i goes to worker i % n_workers.
        try:
            if threads:
                ul2.set_num_threads(threads)
            res = {}
            for i, b in enumerate(batches):
                if i % n_workers != worker:
                    continue
                parts = [batch_bytes(ds.batch(b)) for ds in datasets]
                parts.append(batch_bytes(c([rows[k] for k in b], keys=b)))
                res[i] = hashlib.sha256(b"".join(parts)).hexdigest()
            q.put((worker, res))
        except BaseException as e:
            q.put((worker, repr(e)))
    """
)


def in_process(datasets, c, rows, batches) -> dict[int, str]:
    return {
        i: hashlib.sha256(
            b"".join(
                [batch_bytes(ds.batch(b)) for ds in datasets] + [batch_bytes(c([rows[k] for k in b], keys=b))]
            )
        ).hexdigest()
        for i, b in enumerate(batches)
    }


@pytest.fixture
def worker_module(tmp_path, monkeypatch):
    (tmp_path / "ul2_robustness_worker.py").write_text(WORKER)
    monkeypatch.syspath_prepend(str(tmp_path))
    import ul2_robustness_worker

    yield ul2_robustness_worker
    sys.modules.pop("ul2_robustness_worker", None)


def memmap_copy(tmp_path, tokens: np.ndarray, dtype) -> np.memmap:
    path = tmp_path / f"tokens.{np.dtype(dtype).name}"
    mm = np.memmap(path, dtype=dtype, mode="w+", shape=tokens.shape)
    mm[:] = tokens
    mm.flush()
    del mm
    return np.memmap(path, dtype=dtype, mode="r", shape=tokens.shape)


@pytest.mark.parametrize("method", ["fork", "spawn"])
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_dataloader_workers_give_the_bytes_of_one_process(method, worker_module, tmp_path):
    """DataLoader-free worker simulation: 0 (in-process), 1 and 2 worker processes share the
    batches round-robin; each worker has the datasets (a memmap one, packed decoder-only rows,
    joined documents with separators) and the Collator by fork or by pickling (spawn), and runs
    with its own thread count. Every batch's bytes equal the in-process ones."""
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method}")
    mm = memmap_copy(tmp_path, TOKENS, np.uint16 if TOKENS.max() < 2**16 else np.uint32)
    datasets = [
        dataset("seqio", tokens=mm, doc_offsets=OFFSETS, documents="respect", seed=3),
        dataset("decoder", pack=True, seed=4),
        dataset("hf", doc_offsets=OFFSETS, separator_id=SEP, seed=5),
    ]
    c = collator("hf", seed=6)
    n = min(len(d) for d in datasets)
    rows = user_rows(n, 3)
    batches = [np.arange(s, min(s + 7, n)) for s in range(0, n, 7)]
    want = in_process(datasets, c, rows, batches)
    ctx = multiprocessing.get_context(method)
    for n_workers in (1, 2):
        q = ctx.Queue()
        procs = [
            ctx.Process(
                target=worker_module.work,
                args=(q, w, n_workers, datasets, c, rows, batches, 1 + w),
            )
            for w in range(n_workers)
        ]
        for p in procs:
            p.start()
        try:
            results = [q.get(timeout=180) for _ in procs]
        finally:
            for p in procs:
                p.join(60)
                if p.is_alive():
                    p.kill()
        got: dict[int, str] = {}
        for w, res in results:
            assert isinstance(res, dict), f"worker {w}: {res}"
            assert not set(res) & set(got)
            got.update(res)
        assert got == want, f"{n_workers} {method} workers"
        assert all(p.exitcode == 0 for p in procs)


SPAWNED = textwrap.dedent(
    """
    import hashlib, pickle, sys
    import numpy as np
    import ul2
    datasets, c, rows, n_calls, keys = pickle.loads(sys.stdin.buffer.read())
    out = []
    for ds in datasets:
        batch = ds.batch(np.arange(len(ds)))
        blob = b"".join(name.encode() + a.tobytes() for name, a in sorted(batch.items()))
        out.append(hashlib.sha256(blob).hexdigest())
        out.append((len(ds), ds.num_samples, ds.tail, ds.stream_length))
    # The collator resumes where the parent's stopped.
    out.append(c.next_key)
    out.append([hashlib.sha256(c(rows).get("input_ids").tobytes()).hexdigest() for _ in range(n_calls)])
    out.append(c.next_key)
    print(repr(out))
    """
)


def test_pickled_datasets_and_collator_continue_in_a_fresh_process(tmp_path):
    """Pickling a DenoisingDataset (memmap or in-memory, packed or not) and a Collator that has
    run N calls into a new interpreter: byte-identical examples there, and the Collator
    continues with the keys and examples the original would have produced next."""
    mm = memmap_copy(tmp_path, TOKENS, np.uint32)
    datasets = [
        dataset("hf", tokens=mm, seed=21),
        dataset("seqio_decoder", tokens=mm, pack=True, doc_offsets=OFFSETS, documents="respect", seed=22),
        dataset("seqio", doc_offsets=OFFSETS, separator_id=SEP, seed=23),
    ]
    c = collator("hf", seed=24)
    rows = user_rows(9, 4)
    for _ in range(5):
        c(rows)
    payload = pickle.dumps((datasets, c, rows, 3, None))
    assert len(payload) < 600_000  # the memmap travels by file name, not by value
    r = subprocess.run([sys.executable, "-c", SPAWNED], input=payload, capture_output=True, timeout=180)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    child = ast.literal_eval(r.stdout.decode().strip())
    want = []
    for ds in datasets:
        batch = ds.batch(np.arange(len(ds)))
        want.append(
            hashlib.sha256(
                b"".join(name.encode() + a.tobytes() for name, a in sorted(batch.items()))
            ).hexdigest()
        )
        want.append((len(ds), ds.num_samples, ds.tail, ds.stream_length))
    want.append(45)
    want.append([hashlib.sha256(c(rows)["input_ids"].tobytes()).hexdigest() for _ in range(3)])
    want.append(72)
    assert child == want


def test_resuming_from_a_saved_position():
    """A Collator pickled after N calls continues with the keys and examples the original gives
    next; a restored dataset read from a sampler position gives the same examples as the
    original from that position on."""
    ds = dataset("decoder", pack=True, seed=31)
    c = collator("decoder", pack=True, seed=32)
    rows = user_rows(12, 5)
    for _ in range(7):
        c(rows)
    saved, saved_ds = pickle.dumps(c), pickle.dumps(ds)
    position = len(ds) // 3
    later = [c(rows) for _ in range(4)]
    later_ds = [ds.batch(np.arange(s, min(s + 5, len(ds)))) for s in range(position, len(ds), 5)]
    restored, restored_ds = pickle.loads(saved), pickle.loads(saved_ds)
    assert restored.next_key == 7 * 12
    for a in later:
        assert_same(restored(rows), a)
    assert restored.next_key == c.next_key == 11 * 12
    for s, a in zip(range(position, len(ds), 5), later_ds, strict=True):
        assert_same(restored_ds.batch(np.arange(s, min(s + 5, len(ds)))), a)
    # Explicit keys from the saved position give the same examples as the running counter.
    fresh = collator("decoder", pack=True, seed=32)
    assert_same(fresh(rows, keys=np.arange(7 * 12, 8 * 12)), later[0])


# ---------------------------------------------------------------------------------------------
# 5. Accounting: every token used once or reported in the tail
# ---------------------------------------------------------------------------------------------


def examples(
    ds: ul2.DenoisingDataset, out: dict[str, np.ndarray]
) -> list[tuple[int, int, list[int], list[int]]]:
    """(sample id, denoiser, inputs, targets) of every example in a batch of all of ds's items,
    read back through each format's own masks, lengths and segment ids."""
    fmt, res = ds.format, []
    for r in range(len(ds)):
        sample_ids = list(ds.samples(r))
        if not ds.pack:
            (k,) = sample_ids
            d = int(out["denoiser"][r])
            if fmt == "hf":
                inputs = out["input_ids"][r][out["attention_mask"][r] == 1]
                targets = out["labels"][r][out["decoder_attention_mask"][r] == 1]
                assert (out["labels"][r][out["decoder_attention_mask"][r] == 0] == -100).all()
            elif fmt == "seqio":
                inputs = out["encoder_input_tokens"][r][out["encoder_input_tokens"][r] != PAD]
                targets = out["decoder_target_tokens"][r][out["decoder_loss_weights"][r] == 1]
            elif fmt == "decoder":
                seq = out["input_ids"][r][out["attention_mask"][r] == 1]
                p = int(out["prefix_lengths"][r])
                inputs, targets = seq[:p], seq[p:]
                assert (out["labels"][r][:p] == -100).all()
                np.testing.assert_array_equal(out["labels"][r][p : len(seq)], targets)
            else:
                t, w = out["decoder_target_tokens"][r], out["decoder_loss_weights"][r]
                n = int((t != PAD).sum())
                inputs, targets = t[:n][w[:n] == 0], t[w == 1]
            res.append((k, d, inputs.tolist(), targets.tolist()))
            continue
        enc_seg = {"hf": "segment_ids", "seqio": "encoder_segment_ids"}.get(fmt)
        seg = out["decoder_segment_ids" if fmt != "decoder" else "segment_ids"][r]
        for s, k in enumerate(sample_ids, start=1):
            where = seg == s
            d = int(out["denoiser"][r][where][0])
            if fmt in ("hf", "seqio"):
                enc = out["input_ids" if fmt == "hf" else "encoder_input_tokens"][r]
                dec = out["labels" if fmt == "hf" else "decoder_target_tokens"][r]
                inputs, targets = enc[out[enc_seg][r] == s], dec[where]
            elif fmt == "decoder":
                seq, bidi = out["input_ids"][r][where], out["bidirectional_mask"][r][where]
                inputs, targets = seq[bidi == 1], seq[bidi == 0]
            else:
                seq, w = out["decoder_target_tokens"][r][where], out["decoder_loss_weights"][r][where]
                inputs, targets = seq[w == 0], seq[w == 1]
            res.append((k, d, inputs.tolist(), targets.tolist()))
    return res


ACCOUNTING = [
    ("concat", None),
    ("concat", SEP),
    ("respect", None),
]


@pytest.mark.parametrize(
    ("documents_mode", "separator"), ACCOUNTING, ids=["concat", "concat+separator", "respect"]
)
@pytest.mark.parametrize("fmt", list(FORMATS))
@pytest.mark.parametrize("pack", [False, True], ids=["plain", "packed"])
def test_every_token_is_used_once_or_reported_in_the_tail(documents_mode, separator, fmt, pack):
    """Over a whole stream of unique ids: every example read back from the batch is exactly its
    span of the (joined) stream, spans cover [0, stream_length - tail) once each, every
    document token (and every separator) lands in exactly one example or in the tail, and the
    tail is shorter than a sample."""
    ds = dataset(fmt, pack, doc_offsets=OFFSETS, documents=documents_mode, separator_id=separator, seed=41)
    joined = np.insert(TOKENS, OFFSETS[1:-1], SEP) if separator is not None else TOKENS
    assert ds.stream_length == joined.size
    out = ds.batch(np.arange(len(ds)))
    found = examples(ds, out)
    assert [k for k, *_ in found] == list(range(ds.num_samples))
    cover = np.zeros(joined.size, np.int32)
    for k, d, inputs, targets in found:
        assert d == ds.denoiser(k)
        a, b = ds.span(k)
        testing.check_example(joined[a:b], inputs, targets, MIXTURE.denoisers[d], sentinels=SENTINELS)
        cover[a:b] += 1
    used = ds.span(ds.num_samples - 1)[1] if ds.num_samples else 0
    assert (cover[:used] == 1).all() and (cover[used:] == 0).all()
    assert used + ds.tail == joined.size
    if documents_mode == "respect":
        assert ds.tail == 0
    else:
        assert ds.tail < max(ds.raw_lengths)
    # Each original token (id 10 + position) once in the used part or in the tail.
    ids = joined[cover == 1]
    real = ids[ids != SEP] if separator is not None else ids
    tail_ids = joined[used:]
    tail_real = tail_ids[tail_ids != SEP] if separator is not None else tail_ids
    np.testing.assert_array_equal(np.sort(np.concatenate([real, tail_real])), TOKENS)
    if separator is not None:
        assert (ids == SEP).sum() + (tail_ids == SEP).sum() == len(OFFSETS) - 2


# ---------------------------------------------------------------------------------------------
# 5. Memory: a million small calls; a 10^8-token batch
# ---------------------------------------------------------------------------------------------


MEMORY = textwrap.dedent(
    """
    import gc, os, sys
    import numpy as np
    import ul2

    def resident_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    per_call = int(sys.argv[1])
    s = ul2.Sentinels.t5(1_000_000, 200)
    m = ul2.presets.ul2({"[NLU]": [2], "[NLG]": [3], "[S2S]": [4]})
    c = ul2.Collator(m, sentinels=s, inputs_length=256, targets_length=256)
    tokens = np.arange(10, 40_010, dtype=np.int32)
    ds = ul2.DenoisingDataset(tokens, m, sentinels=s, sequence_length=512, pack=True)
    row = np.arange(10, 60, dtype=np.int32)[None]
    tokens, mask = np.arange(10, 30, dtype=np.int32), np.zeros(20, bool)
    mask[[3, 4, 11]] = True
    n = len(ds)
    calls = [
        lambda i: ul2.noise_mask(32, 0.15, seed=1, key=i),
        lambda i: ul2.apply_mask(tokens, mask, s, eos_id=1),
        lambda i: c(row, keys=[i]),
        lambda i: ds[i % n],
    ]
    for f in calls:
        for i in range(20_000):
            f(i)
    gc.collect()
    before = resident_mb()
    for f in calls:
        for i in range(per_call):
            f(i)
    gc.collect()
    print(before, resident_mb())
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_a_million_small_calls_keep_resident_memory_flat():
    """10^6 small calls (noise_mask, apply_mask, a 1-row Collator call and a packed dataset
    item, a quarter each; 4 x 10^6 with UL2_FUZZ=1), in a fresh interpreter so that nothing
    else runs meanwhile: resident memory after them is within a few MB of the level after a
    warm-up of 80 000 calls."""
    per_call = 1_000_000 if LONG else 250_000
    r = subprocess.run(
        [sys.executable, "-c", MEMORY, str(per_call)], capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
    before, after = map(float, r.stdout.split())
    assert after - before < 8, (
        f"resident memory grew from {before:.1f} MB to {after:.1f} MB over {4 * per_call} calls"
    )


@pytest.mark.parametrize(
    ("dtype", "pack"),
    [
        (np.int32, False),
        pytest.param(np.int64, True, marks=pytest.mark.skipif(not LONG, reason="UL2_FUZZ=1")),
    ],
    ids=["int32", "int64-packed"],
)
def test_a_batch_of_a_hundred_million_tokens(dtype, pack):
    """One Collator call on a [176057, 568] int32 array (10^8 tokens, 400 MB): full-width rows,
    and spot-checked rows equal the same rows denoised alone, which round-trip."""
    length = 568
    b = -(-(10**8) // length)
    rows = np.resize(np.arange(10, 30_010, dtype=np.int32), (b, length))
    assert rows.size >= 10**8
    t5 = ul2.Collator(
        ul2.presets.t5(), sentinels=SENTINELS, inputs_length=512, dtype=dtype, pack=pack, seed=9
    )
    out = t5(rows)
    assert t5.next_key == b
    if not pack:
        assert out["input_ids"].shape == (b, 512) and out["labels"].shape == (b, 114)
        assert out["input_ids"].dtype == dtype
        assert (out["attention_mask"].sum(1) == 512).all() and (
            out["decoder_attention_mask"].sum(1) == 114
        ).all()
    spot = sorted({0, 1, b // 3, b // 2, b - 2, b - 1})
    d = ul2.presets.t5().denoisers[0]
    for r in spot:
        alone = ul2.Collator(ul2.presets.t5(), sentinels=SENTINELS, inputs_length=512, dtype=dtype, seed=9)(
            rows[r : r + 1], keys=[r]
        )
        inputs = alone["input_ids"][0][alone["attention_mask"][0] == 1].tolist()
        targets = alone["labels"][0][alone["decoder_attention_mask"][0] == 1].tolist()
        testing.check_example(rows[r], inputs, targets, d, sentinels=SENTINELS)
        if not pack:
            for name in alone:
                np.testing.assert_array_equal(out[name][r], alone[name][0], err_msg=name)
    if pack:
        assert int(out["segment_ids"].max()) >= 1 and t5.fill_rate > 0.9
    del out, rows


@pytest.mark.parametrize("kind", ["error", "panic"])
def test_internal_errors_and_panics_become_runtime_errors_and_the_pool_lives_on(kind):
    # No public input reaches these paths any more; the hook forces them on a pool thread.
    from ul2 import _ul2

    with pytest.raises(RuntimeError, match="internal error \\(please report\\)") as info:
        _ul2._fail(kind)
    assert ("panic" in str(info.value)) == (kind == "panic")
    rows = np.arange(3, 3 + 2 * 568, dtype=np.int32).reshape(2, 568)
    out = ul2.Collator(ul2.presets.t5(), sentinels=ul2.Sentinels.t5(32100), inputs_length=512)(rows)
    assert out["input_ids"].shape == (2, 512)


# ---------------------------------------------------------------------------------------------
# No bad input crashes the process: SPEC §8.7 in a child, absurd sizes, failed allocations
# ---------------------------------------------------------------------------------------------

# Every file's ``BAD`` cases in one child: a case that aborts the process or leaks a
# PanicException cannot take pytest down, and each must still raise its own error there.
BAD_INPUT_CHILD = textwrap.dedent(
    """
    import importlib.util, json, sys
    import ul2

    def call_key(f):
        # Two cases are the same call when their code, constants, names and bound values are.
        c = f.__code__
        cells = [repr(cell.cell_contents) for cell in f.__closure__ or ()]
        return repr((c.co_code, c.co_consts, c.co_names, f.__defaults__, cells))

    report = {"cases": {}, "failed": [], "repeated_ids": [], "repeated_calls": []}
    ids, calls = {}, {}
    for i, path in enumerate(sys.argv[1:]):
        spec = importlib.util.spec_from_file_location(f"ul2_bad_inputs_{i}", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        report["cases"][path] = len(mod.BAD)
        for case in mod.BAD:
            where = f"{path}::{case.id}"
            if case.id in ids:
                report["repeated_ids"].append([ids[case.id], where])
            ids.setdefault(case.id, where)
            key = call_key(case.call)
            if key in calls:
                report["repeated_calls"].append([calls[key], where])
            calls.setdefault(key, where)
            try:
                case.check()
            except BaseException as e:
                report["failed"].append(f"{path}: {type(e).__name__}: {e}")
            ul2.set_num_threads(None)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def bad_input_report() -> dict:
    paths = sorted(
        str(f)
        for f in Path(__file__).parent.glob("test_*.py")
        if "\nBAD = testing.BadInputs()\n" in f.read_text()
    )
    r = subprocess.run(
        [sys.executable, "-c", BAD_INPUT_CHILD, *paths], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    return json.loads(r.stdout)


def test_no_bad_input_crashes_the_process_and_each_raises_its_error(bad_input_report: dict) -> None:
    assert len(bad_input_report["cases"]) >= 6, bad_input_report["cases"]
    assert all(bad_input_report["cases"].values()), bad_input_report["cases"]
    assert bad_input_report["failed"] == []


def test_bad_input_ids_are_unique_and_calls_new(bad_input_report: dict) -> None:
    """No id names two cases, and no case repeats another's call under a new id (in any file)."""
    assert bad_input_report["repeated_ids"] == []
    assert bad_input_report["repeated_calls"] == []


# Absurd sizes: a clean ValueError (or MemoryError), never an abort or a PanicException.
# Each runs in its own child under an address-space limit, since today some abort.
HUGE = [
    ("noise_mask-length=2**62", "ul2.noise_mask(2**62, 0.15)", "length"),
    ("Sentinels.t5-count=2**62", "ul2.Sentinels.t5(2**62, 2**62)", "count"),
    ("Sentinels.t5-count=2**40", "ul2.Sentinels.t5(2**62, 2**40)", "count"),
    (
        "Collator-call-targets_length=2**40",
        "ul2.Collator(ul2.CausalLM(), sentinels=ul2.Sentinels.t5(32100),"
        " inputs_length=2**40, targets_length=2**40)(np.full((1, 5), 3, np.int32))",
        "length",
    ),
    (
        "Collator-call-lengths=2**62",
        "ul2.Collator(ul2.CausalLM(), sentinels=ul2.Sentinels.t5(32100),"
        " inputs_length=2**62, targets_length=2**62)(np.full((1, 5), 3, np.int32))",
        "length",
    ),
]

HUGE_SCRIPT = textwrap.dedent(
    """
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import numpy as np
    import ul2
    try:
        {expr}
    except ValueError as e:
        print("ValueError", e)
    except MemoryError as e:
        print("MemoryError", e)
    else:
        print("no error")
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS")
@pytest.mark.parametrize(("expr", "needle"), [h[1:] for h in HUGE], ids=[h[0] for h in HUGE])
def test_huge_sizes_raise_instead_of_aborting(expr, needle):
    r = subprocess.run(
        [sys.executable, "-c", HUGE_SCRIPT.format(expr=expr)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr.strip().splitlines()[:3]}"
    kind, _, msg = r.stdout.strip().partition(" ")
    assert kind in ("ValueError", "MemoryError"), r.stdout
    if kind == "ValueError":
        assert needle in msg, msg


# Every allocation whose size follows from the input goes through a fallible path: under an
# address-space limit anywhere between "nothing fits" and "everything fits", a call either
# succeeds or raises MemoryError — the formatter's arrays and the composer's scratch once
# aborted the process instead (SIGABRT).
ALLOC_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import ul2
    ul2.set_num_threads(1)
    n = 1 << 24
    sentinels = ul2.Sentinels.t5(32100, on_overflow="cap")
    c = ul2.Collator(ul2.SpanCorruption(3.0, float(sys.argv[4])), sentinels=sentinels, inputs_length=n,
                     format=sys.argv[2], pack=sys.argv[3] == "1")
    rows = np.full((1, c.inputs_length), 5, np.int32)
    # The calling thread's pool, before the limit.
    ul2.Collator(ul2.SpanCorruption(3.0, 0.15), sentinels=sentinels, inputs_length=64)(rows[:, :60])
    with open("/proc/self/status") as f:
        vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    limit = vm + int(sys.argv[1]) * (1 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        out = c(rows, keys=[0])
    except MemoryError as e:
        print("MemoryError", e)
    else:
        print("ok", sum(a.nbytes for a in out.values()))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS and /proc")
# seqio's own arrays (decoder inputs, loss weights) are of the targets' width: at r = 0.5 as
# wide as the inputs, so that the sweep meets them.
@pytest.mark.parametrize(("fmt", "pack", "density"), [("hf", "1", "0.15"), ("seqio", "0", "0.5")])
def test_failed_allocations_are_memory_errors_at_every_step(fmt, pack, density):
    """Limits 32 MB apart from "nothing fits" to "everything fits" (each output array is
    64 MB), so a failure lands at each allocation of the call in turn. mimalloc reserves 1 GiB
    at a time, which would serve the whole call from memory reserved before the limit; 16 MiB
    arenas make every output buffer a reservation of its own, which the limit then meets."""
    seen = set()
    env = {**os.environ, "MIMALLOC_ARENA_RESERVE": "16384"}  # KiB
    for extra_mb in range(-48, 720, 32):
        r = subprocess.run(
            [sys.executable, "-c", ALLOC_SCRIPT, str(extra_mb), fmt, pack, density],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert r.returncode == 0, f"+{extra_mb} MB: exit {r.returncode}: {r.stderr.strip()[-500:]}"
        kind, _, msg = r.stdout.strip().partition(" ")
        assert kind in ("ok", "MemoryError"), r.stdout
        if kind == "MemoryError":
            assert "cannot allocate" in msg or not msg, msg  # ours, or one of Python's own
        seen.add(msg.split(":")[0] if kind == "MemoryError" else kind)
    # Both the denoiser's buffers and the formatter's arrays were met, and the call then fits.
    assert {"ok", "inputs_length", "rows"} <= seen, seen
