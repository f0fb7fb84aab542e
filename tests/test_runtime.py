"""Runtime behaviour of the batch transform: the GIL is released during Rust work (the
safetensors ``test_threadable`` idea), one Collator is safe to share between Python threads,
``Sentinels`` pickle, and a forked child (a DataLoader worker) can use ul2 after the parent did."""

from __future__ import annotations

import copy
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import ul2
from ul2 import testing

VOCAB = 32100
HF_NAMES = ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask")


def t5_collator(**kw) -> ul2.Collator:
    return ul2.Collator(ul2.presets.t5(), sentinels=ul2.Sentinels.t5(VOCAB), inputs_length=512, **kw)


def mixed_collator(**kw) -> ul2.Collator:
    prompts = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}
    return ul2.Collator(
        ul2.presets.ul2(prompts=prompts),
        sentinels=ul2.Sentinels.t5(VOCAB, count=200),
        inputs_length=512,
        **kw,
    )


def mixed_rows(b: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(6, 31000, int(n)).astype(np.int32) for n in rng.integers(1, 200, b)]


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert set(a) == set(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# ---------------------------------------------------------------------------------------------
# GIL release
# ---------------------------------------------------------------------------------------------


def test_gil_is_released_during_a_batch_call():
    """While one long Collator call runs, a Python thread keeps running.

    The counter thread sleeps a little between increments, so if the call held the GIL the
    counter could only move at the call's edges (one or two switches at most); a call that
    releases the GIL lets it advance throughout. No timing is asserted, only that it moved.
    """
    rows = np.random.default_rng(0).integers(2, 32000, (16384, 568)).astype(np.int32)
    c = t5_collator()
    counter = [0]
    stop = threading.Event()
    started = threading.Event()

    def count() -> None:
        started.set()
        while not stop.is_set():
            counter[0] += 1
            stop.wait(0.0002)

    t = threading.Thread(target=count, daemon=True)
    try:
        ul2.set_num_threads(1)  # the longest call: one Rust thread does all rows
        c(rows[:8])  # pool started outside the measured call
        t.start()
        assert started.wait(10)
        before = counter[0]
        out = c(rows)
        during = counter[0] - before
    finally:
        stop.set()
        ul2.set_num_threads(None)
        t.join(10)
    assert out["input_ids"].shape == (16384, 512)
    assert during >= 5, f"the counter thread advanced only {during} times during the call: GIL held?"


def test_gil_is_released_by_a_call_in_a_worker_thread():
    """The mirror image: the call runs in a worker thread and the main thread keeps counting
    until the worker is done."""
    rows = np.random.default_rng(1).integers(2, 32000, (16384, 568)).astype(np.int32)
    c = t5_collator()
    result: dict[str, object] = {}
    entered = threading.Event()

    def work() -> None:
        entered.set()
        result["out"] = c(rows)

    ticks = 0
    try:
        ul2.set_num_threads(1)
        c(rows[:8])
        t = threading.Thread(target=work)
        t.start()
        assert entered.wait(10)
        while t.is_alive():
            ticks += 1
            t.join(0.0002)
    finally:
        ul2.set_num_threads(None)
    assert result["out"]["labels"].shape == (16384, 114)  # type: ignore[index]
    assert ticks >= 5, f"the main thread ran only {ticks} times while the worker's call ran"


# ---------------------------------------------------------------------------------------------
# Sharing one Collator between threads
# ---------------------------------------------------------------------------------------------


def test_threads_sharing_one_collator_with_explicit_keys():
    c = mixed_collator(seed=7)
    rows = mixed_rows(64, 2)
    n_threads, calls = 8, 6
    rng = np.random.default_rng(3)
    jobs = [
        [
            (rng.choice(64, size=int(rng.integers(1, 20)), replace=False), rng.integers(0, 2**40, 20))
            for _ in range(calls)
        ]
        for _ in range(n_threads)
    ]
    expected = [
        [c([rows[i] for i in idx], keys=keys[: len(idx)]) for idx, keys in thread_jobs]
        for thread_jobs in jobs
    ]
    got: list[list[dict[str, np.ndarray]]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def run(t: int) -> None:
        try:
            barrier.wait(10)
            for idx, keys in jobs[t]:
                got[t].append(c([rows[i] for i in idx], keys=keys[: len(idx)]))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    for t in range(n_threads):
        assert len(got[t]) == calls
        for a, b in zip(got[t], expected[t], strict=True):
            assert_same(a, b)


def test_threads_with_default_keys_never_share_a_key():
    """The running counter is atomic: concurrent calls without keys get disjoint key blocks,
    and every block is exactly what explicit keys give."""
    b, n_threads, calls = 4, 8, 5
    rows = np.random.default_rng(4).integers(2, 32000, (b, 300)).astype(np.int32)
    c = t5_collator(seed=9)
    got: list[dict[str, np.ndarray]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def run() -> None:
        try:
            barrier.wait(10)
            for _ in range(calls):
                out = c(rows)
                with lock:
                    got.append(out)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    total = b * n_threads * calls
    assert c.next_key == total
    ref = t5_collator(seed=9)
    blocks = {ref(rows, keys=np.arange(s, s + b))["input_ids"].tobytes(): s for s in range(0, total, b)}
    assert len(blocks) == total // b  # the blocks are distinguishable
    starts = [blocks.get(out["input_ids"].tobytes()) for out in got]
    assert None not in starts
    assert sorted(starts) == list(range(0, total, b))


# ---------------------------------------------------------------------------------------------
# Pickling Sentinels
# ---------------------------------------------------------------------------------------------

SENTINEL_CASES = [
    lambda: ul2.Sentinels.t5(VOCAB),
    lambda: ul2.Sentinels.t5(VOCAB, 50, on_overflow="cap", check_collisions=False),
    lambda: ul2.Sentinels.t5(256, 3, on_overflow="t5"),
    lambda: ul2.Sentinels.from_ids([250, 260, 255, 7]),
    lambda: ul2.Sentinels.from_ids(np.array([9, 8, 7]), on_overflow="cap", check_collisions=False),
]


@pytest.mark.parametrize("make", SENTINEL_CASES)
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_sentinels_pickle_round_trip(make, protocol):
    s = make()
    r = pickle.loads(pickle.dumps(s, protocol=protocol))
    assert type(r) is ul2.Sentinels
    assert r == s
    assert hash(r) == hash(s)
    np.testing.assert_array_equal(r.ids, s.ids)
    assert r.ids.dtype == s.ids.dtype
    assert (r.count, r.vocab_size, r.on_overflow, r.check_collisions) == (
        s.count,
        s.vocab_size,
        s.on_overflow,
        s.check_collisions,
    )
    assert len(r) == len(s)
    assert repr(r) == repr(s)
    assert copy.deepcopy(s) == s
    assert copy.copy(s) == s


def test_sentinels_equality_sees_policies():
    a = ul2.Sentinels.t5(VOCAB)
    assert a != ul2.Sentinels.t5(VOCAB, on_overflow="cap")
    assert a != ul2.Sentinels.t5(VOCAB, check_collisions=False)
    assert a != ul2.Sentinels.t5(VOCAB, 99)
    assert a != ul2.Sentinels.t5(VOCAB + 1)


def test_unpickled_sentinels_give_the_same_batches():
    s = ul2.Sentinels.t5(VOCAB, count=200)
    s2 = pickle.loads(pickle.dumps(s))
    rows = mixed_rows(16, 5)
    prompts = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}
    m = ul2.presets.ul2(prompts=prompts)
    a = ul2.Collator(m, sentinels=s, inputs_length=512, seed=1)(rows)
    b = ul2.Collator(m, sentinels=s2, inputs_length=512, seed=1)(rows)
    assert_same(a, b)


# ---------------------------------------------------------------------------------------------
# fork safety
# ---------------------------------------------------------------------------------------------


def _fork_child(q, c, rows, keys) -> None:  # runs in the forked child
    try:
        a = c(rows, keys=keys)  # the collator inherited from the parent
        b = mixed_collator(seed=11)(rows, keys=keys)  # and a fresh one
        q.put(
            (
                "ok",
                {k: v.copy() for k, v in a.items()},
                {k: v.copy() for k, v in b.items()},
                ul2.get_num_threads(),
            )
        )
    except BaseException as e:
        q.put(("error", repr(e), None, None))


@pytest.mark.skipif(
    sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork"
)
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_forked_child_after_parent_used_the_pool():
    rows = mixed_rows(200, 6)
    keys = np.arange(200)
    c = mixed_collator(seed=11)
    try:
        ul2.set_num_threads(2)
        parent = c(rows, keys=keys)  # the pool is running with worker threads now
        assert ul2.get_num_threads() == 2
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_fork_child, args=(q, c, rows, keys))
        p.start()
        try:
            status, a, b, threads = q.get(timeout=120)
        finally:
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()
        assert status == "ok", a
        assert p.exitcode == 0
        assert threads == 2  # the child builds its own pool with the same setting
        assert_same(parent, a)
        assert_same(parent, b)
        # The parent's pool still works after the fork.
        assert_same(parent, c(rows, keys=keys))
    finally:
        ul2.set_num_threads(None)


@pytest.mark.parametrize("n", [0, -1, 1025, 10**6])
def test_thread_counts_out_of_range_are_refused(n):
    with pytest.raises(ValueError, match=rf"num_threads={n}"):
        ul2.set_num_threads(n)


@pytest.mark.parametrize("value", ["99999", "0", "lots"])
def test_ul2_num_threads_out_of_range_is_a_clear_error(value):
    """UL2_NUM_THREADS=99999 once spawned threads until the OS refused (minutes)."""
    script = (
        "import numpy as np, ul2\ntry:\n    ul2.get_num_threads()\nexcept ValueError as e:\n    print(e)\n"
    )
    env = {**os.environ, "UL2_NUM_THREADS": value}
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "UL2_NUM_THREADS" in r.stdout and value in r.stdout and "1024" in r.stdout, r.stdout


def test_short_lived_calling_threads_keep_memory_flat():
    """Each Python thread that called ul2 once kept ~7.6 KB (its inline pool) for good:
    20,000 of them grew the process by 150 MB."""
    script = textwrap.dedent(
        """
        import threading
        import numpy as np, ul2
        ul2.set_num_threads(1)
        c = ul2.Collator(ul2.SpanCorruption(3.0, 0.15), sentinels=ul2.Sentinels.t5(32100), inputs_length=64)
        rows = np.full((2, 60), 5, np.int32)
        def rss():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        def spawn(k):
            for _ in range(k):
                t = threading.Thread(target=c, args=(rows,))
                t.start()
                t.join()
        spawn(500)
        before = rss()
        spawn(8000)
        print(rss() - before)
        """
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) < 8 * 1024, f"RSS grew {r.stdout.strip()} KB over 8000 threads"


# ---------------------------------------------------------------------------------------------
# Bad inputs (SPEC §8.7); the counts out of range are above
# ---------------------------------------------------------------------------------------------

BAD = testing.BadInputs()
add = BAD.add

# ---- set_num_threads -----------------------------------------------------------------------------
add("set_num_threads-bool", lambda: ul2.set_num_threads(True), TypeError, "num_threads")
add("set_num_threads-str", lambda: ul2.set_num_threads("2"), TypeError, "num_threads")
add("set_num_threads-2**64", lambda: ul2.set_num_threads(2**64), ValueError, "num_threads")
add("set_num_threads-float", lambda: ul2.set_num_threads(1.5), TypeError, "num_threads")


@pytest.mark.parametrize("case", BAD, ids=str)
def test_bad_input(case: testing.BadInput) -> None:
    case.check()
