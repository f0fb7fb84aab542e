"""The adapters' glue against the core, in one run (issue 13 item 6): what a framework hands ul2
(Python lists, NumPy rows, Arrow batches, worker processes) must not cost more than the core.

Timed: ``pytest benches/python/test_bench_glue.py --benchmark-only -s``; the ratios are printed
at the end of the module. As a smoke test (``--benchmark-disable``) each path runs once and is
checked to give the bytes of the core's own path. Each "before" is the adapter's previous code,
kept here as the reference it is measured against:

- ``hf``: ``presets.t5()`` at 512, 256 rows of 568 tokens (``report.WORKLOADS["t5"]``), int64
  outputs (``DataCollator``'s default). ``ul2.Collator`` on the rows as one 2-D array is the
  reference; ``DataCollator`` gets them as features of Python lists (a ``datasets.Dataset``'s
  default format) and as 1-D NumPy arrays (``with_format("numpy")``). Before: a
  ``numpy.ascontiguousarray`` per row.
- ``arrow``: ``datasets.Dataset.map(ul2.arrow.Denoise(...), batched=True)`` over 4096 such rows
  with ``with_format("arrow")``: ul2's share is the CPU time inside ``Denoise`` over the whole
  ``map``'s. Before: the rows cut with ``np.split``.
- ``loader``: ``DataLoader(ul2.torch.Dataset(ds), batch_size=64, num_workers=2)`` over a
  ``DenoisingDataset`` of the ``ul2()`` mixture at 512/512: output tokens per CPU second of the
  main process (the one that trains). Before: int64 outputs, one ``torch.from_numpy`` per field
  (six storages per batch, each sent to the main process on its own).
- ``stream``: ``DenoisingStream(iter(documents), ul2(), batch_size=64)`` at 512/512 over 4 M
  tokens in 2700 NumPy documents, one thread, against ``DenoisingDataset.batch`` over their
  concatenation (the same batches, checked), in both document modes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import report
import ul2
import ul2.arrow

torch = pytest.importorskip("torch")
datasets = pytest.importorskip("datasets")

import ul2.hf  # noqa: E402
import ul2.torch  # noqa: E402

# ratio name -> measured values, printed when the module ends.
RESULTS: dict[str, list[float]] = {}


@pytest.fixture(scope="module", autouse=True)
def _print_ratios(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if request.config.getoption("benchmark_disable"):
        return
    write = request.config.pluginmanager.get_plugin("terminalreporter").write_line
    with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        for name, values in RESULTS.items():
            write(f"{name}: " + ", ".join(f"{v:.3f}" for v in values))


def _ratio(name: str, value: float) -> None:
    RESULTS.setdefault(name, []).append(value)


@pytest.fixture(scope="module")
def hf() -> dict[str, Any]:
    w = report.WORKLOADS["t5"]()
    rows = np.asarray(w.rows)
    opts: dict[str, Any] = {"sentinels": w.sentinels, "inputs_length": w.inputs_length, "dtype": np.int64}
    return {
        "rows": rows,
        "lists": [{"input_ids": r.tolist()} for r in rows],
        "arrays": [{"input_ids": r.copy()} for r in rows],
        "collator": ul2.Collator(w.mixture, **opts),
        "data_collator": ul2.hf.DataCollator(w.mixture, **opts),
        "keys": np.arange(len(rows), dtype=np.uint64),
    }


def _before_hf(c: Any, features: list[dict[str, Any]]) -> dict[str, Any]:
    """``DataCollator`` before: every row through ``np.ascontiguousarray``."""
    out = c.collator([np.ascontiguousarray(f["input_ids"]) for f in features], c._keys(features))
    return {n: torch.from_numpy(a) for n, a in out.items()}


def _same(got: Mapping[str, Any], ref: Mapping[str, npt.NDArray[Any]]) -> None:
    assert set(got) == set(ref)
    for n, a in ref.items():
        g = got[n].numpy() if isinstance(got[n], torch.Tensor) else np.asarray(got[n])
        assert g.dtype == a.dtype and g.tobytes() == a.tobytes(), n


def _best(f: Callable[[], Any], seconds: float = 0.5) -> float:
    f()
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def _from_key_0(dc: Any, features: list[dict[str, Any]], before: bool = False) -> dict[str, Any]:
    """``dc`` on ``features`` as keys 0.. (the running counter restarted), now or before."""
    dc._next = 0
    return _before_hf(dc, features) if before else dc(features)


@pytest.mark.parametrize("path", ["collator_2d", "lists", "arrays", "lists_before"])
def test_hf(benchmark: Any, hf: dict[str, Any], path: str) -> None:
    benchmark.group = "hf: 256 rows x 568 tokens, int64"
    c, dc = hf["collator"], hf["data_collator"]
    calls: dict[str, Callable[[], Any]] = {
        "collator_2d": lambda: c(hf["rows"], hf["keys"]),
        "lists": lambda: _from_key_0(dc, hf["lists"]),
        "arrays": lambda: _from_key_0(dc, hf["arrays"]),
        "lists_before": lambda: _from_key_0(dc, hf["lists"], before=True),
    }
    _same(benchmark(calls[path]), c(hf["rows"], hf["keys"]))
    if path == "collator_2d" and not benchmark.disabled:
        for _ in range(3):  # interleaved, so that the machine's drift hits both sides alike
            for other in ("lists", "arrays", "lists_before"):
                ratio = _best(calls[path]) / _best(calls[other])
                _ratio(f"hf {other} / Collator 2-D (target lists >= 0.5, arrays >= 0.8)", ratio)


class _Timed(ul2.arrow.Denoise):
    """``Denoise`` that adds up the CPU time spent inside it."""

    cpu = 0.0

    def __call__(self, batch: Any, indices: Any = None) -> Any:
        t0 = time.process_time()
        try:
            return super().__call__(batch, indices)
        finally:
            _Timed.cpu += time.process_time() - t0


class _TimedBefore(_Timed):
    """``Denoise`` before: Arrow rows cut with ``np.split``."""

    def __call__(self, batch: Any, indices: Any = None) -> Any:
        t0 = time.process_time()
        rows = []
        for a in ul2.arrow._chunks(batch.column(self.column)):
            values, offsets = ul2.arrow._chunk_buffers(a)
            rows.extend(np.split(values, offsets[1:-1]) if len(offsets) > 1 else [])
        out = self.collator(rows, None if indices is None else np.asarray(indices, dtype=np.uint64))
        _Timed.cpu += time.process_time() - t0
        return {n: a for n, a in out.items() if n not in ("cu_seqlens", "decoder_cu_seqlens")}


@pytest.fixture(scope="module")
def table() -> Any:
    w = report.WORKLOADS["t5"]()
    rows = np.concatenate([np.asarray(w.rows)] * 16)
    return w, datasets.Dataset.from_dict({"input_ids": list(rows)}).with_format("arrow")


@pytest.fixture(autouse=True)
def _all_threads_afterwards() -> Iterator[None]:
    yield
    ul2.set_num_threads(None)


@pytest.mark.parametrize("path", ["after", "after_1_thread", "before"])
def test_arrow_map(benchmark: Any, table: Any, path: str) -> None:
    benchmark.group = "arrow: datasets.map over 4096 rows x 568 tokens, Arrow format"
    w, ds = table
    if path == "after_1_thread":  # the pool's idle threads spin for a while: CPU time, not work
        ul2.set_num_threads(1)
    denoise = (_TimedBefore if path == "before" else _Timed)(
        ul2.Collator(w.mixture, sentinels=w.sentinels, inputs_length=w.inputs_length)
    )

    def run() -> Any:
        return ds.map(
            denoise, batched=True, with_indices=True, remove_columns=["input_ids"], load_from_cache_file=False
        )

    out = benchmark(run)
    first = out[:4]
    ref = ul2.Collator(w.mixture, sentinels=w.sentinels, inputs_length=w.inputs_length)(
        np.asarray(w.rows)[:4], np.arange(4, dtype=np.uint64)
    )
    for n, a in ref.items():
        assert np.array_equal(np.asarray(first.column(n).to_pylist()), a), n
    if not benchmark.disabled:
        for _ in range(3):
            _Timed.cpu, t0 = 0.0, time.process_time()
            run()
            _ratio(f"arrow map {path}: CPU ms of the whole map", 1e3 * (time.process_time() - t0))
            _ratio(
                f"arrow map {path}: ul2's share of CPU (target <= 0.25)",
                _Timed.cpu / (time.process_time() - t0),
            )


def _before_collate(batch: Mapping[str, Any]) -> dict[str, Any]:
    """``ul2.torch.collate_fn`` before: one ``torch.from_numpy`` (one storage) per field."""
    return {n: torch.from_numpy(np.asarray(a)) for n, a in batch.items()}


def _loader_rate(dtype: Any, collate: Callable[..., Any], batches: int) -> float:
    """Output tokens per CPU second of the main process over ``batches`` batches (warm workers)."""
    w = report.WORKLOADS["t5"]()
    tokens = (
        np.random.default_rng(0)
        .integers(w.sentinel_floor // 2, w.sentinel_floor, 12_000_000)
        .astype(np.int32)
    )
    ds = ul2.DenoisingDataset(
        tokens,
        ul2.presets.ul2(),
        sentinels=ul2.Sentinels.t5(32228, 128),
        inputs_length=512,
        targets_length=512,
        dtype=dtype,
    )
    loader = torch.utils.data.DataLoader(
        ul2.torch.Dataset(ds),
        batch_size=64,
        shuffle=True,
        num_workers=2,
        collate_fn=collate,
        persistent_workers=True,
    )
    it = iter(loader)
    for _ in range(4):
        next(it)
    n, t0 = 0, time.process_time()
    for _ in range(batches):
        b = next(it)
        n += b["input_ids"].numel() + b["labels"].numel()
    cpu = time.process_time() - t0
    del it
    return n / cpu


@pytest.fixture
def _sharing_strategy_afterwards() -> Iterator[None]:
    before = torch.multiprocessing.get_sharing_strategy()
    yield
    torch.multiprocessing.set_sharing_strategy(before)


@pytest.mark.usefixtures("_sharing_strategy_afterwards")
@pytest.mark.parametrize(
    "path",
    ["after_int32", "after_int64", "before_int64", "after_int32_file_system", "before_int64_file_system"],
)
def test_loader(benchmark: Any, path: str) -> None:
    benchmark.group = "loader: DataLoader(num_workers=2), 64 x 512/512, tokens per main-process CPU second"
    if path.endswith("file_system"):  # storages passed by name: no file descriptor, no handshake
        torch.multiprocessing.set_sharing_strategy("file_system")
    dtype = np.int32 if "int32" in path else np.int64
    collate = _before_collate if path.startswith("before") else ul2.torch.collate_fn
    batches = 2 if benchmark.disabled else 100
    rates: list[float] = []
    benchmark.pedantic(
        lambda: rates.append(_loader_rate(dtype, collate, batches)), rounds=1 if benchmark.disabled else 3
    )
    assert all(r > 0 for r in rates)
    if not benchmark.disabled:
        for r in rates:
            _ratio(f"loader {path}: M output tokens per main-process CPU s", r / 1e6)


@pytest.fixture(scope="module")
def documents() -> dict[str, Any]:
    """4 M tokens in documents of 100 to 3000 tokens, the stream's input and the dataset's."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(100, 3000, 2700)
    docs = [rng.integers(2, 32000, n).astype(np.int32) for n in lengths]
    args: dict[str, Any] = {
        "sentinels": ul2.Sentinels.t5(32228, 128),
        "inputs_length": 512,
        "targets_length": 512,
    }
    return {"docs": docs, "args": args}


@pytest.mark.parametrize("path", ["stream", "dataset_batch"])
@pytest.mark.parametrize("mode", ["concat", "respect"])
def test_stream(benchmark: Any, documents: dict[str, Any], path: str, mode: str) -> None:
    benchmark.group = (
        f"stream: ul2() at 512/512 over 4 M tokens of documents, batches of 64, 1 thread, {mode}"
    )
    ul2.set_num_threads(1)
    docs, args = documents["docs"], documents["args"]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    ds = ul2.DenoisingDataset(
        np.concatenate(docs), ul2.presets.ul2(), doc_offsets=offsets, documents=mode, **args
    )

    def stream() -> list[dict[str, npt.NDArray[Any]]]:
        return list(
            ul2.DenoisingStream(iter(docs), ul2.presets.ul2(), documents_mode=mode, batch_size=64, **args)
        )

    def dataset_batch() -> list[dict[str, npt.NDArray[Any]]]:
        return [ds.batch(np.arange(k, min(k + 64, len(ds)))) for k in range(0, len(ds), 64)]

    calls = {"stream": stream, "dataset_batch": dataset_batch}
    got = benchmark(calls[path])
    ref = dataset_batch()
    assert len(got) == len(ref)
    for g, r in zip(got[:3] + got[-1:], ref[:3] + ref[-1:], strict=True):
        _same(g, r)
    if path == "stream" and not benchmark.disabled:
        for _ in range(3):
            _ratio(
                f"stream {mode} / DenoisingDataset.batch, 1 thread (target >= 0.7)",
                _best(dataset_batch, 1.0) / _best(stream, 1.0),
            )
