"""Throughput report: ul2's Collator vs the NumPy baseline vs a memcpy, in one process.

Usage (from the repository root)::

    .venv/bin/python benches/report.py [--quick] [--out bench-results]

Each workload is timed with ``time.perf_counter`` (warm-up call, then best of N repeats, capped
by a per-measurement time budget), for: ul2 on one thread, ul2 on all threads, the NumPy
baseline (``benches/baselines/numpy_collator.py``: ``numpy`` counts span lengths with
``np.bincount``, ``numpy_hf`` with HF's own ``np.unique``) and a memcpy of as many bytes as the
Collator writes (into a preallocated array, so it runs from cache: the strictest line).
Throughput is in raw input tokens per second. The table goes to stdout, the
numbers to ``<out>/latest.json`` and, when matplotlib is importable, a bar chart to
``<out>/latest.png``.

The floor: criterion's group ``floor`` (``cargo bench -p ul2-benches -- floor``, which ``make
bench`` runs first) times the core (``Engine::run``, one thread) next to a Rust kernel that makes
the same copies into the same outputs, each byte written once with no randomness
(``benches/rust/floor.rs``), and a memcpy of the output bytes, in one run. Their best samples
are read from criterion's files and printed as ul2 / floor and ul2 / memcpy (time ratios, so 1.0 is
the floor's speed) for T5 at ``inputs_length=512`` in batches of 1 to 4096 rows and at 128 to
8192 inputs: ratios within one run, so they hold on any machine where absolute speeds do not.

Workloads (also used by ``benches/python/test_bench_collator.py``):

- ``t5``: ``ul2.presets.t5()`` at ``inputs_length=512``: 256 rows of 568 int32 tokens (T5's raw
  length), ``Sentinels.t5(32128, 100)``; outputs 512 inputs / 114 targets per row.
- ``t5_4096``: the same with 4096 rows, for thread scaling (ul2 and memcpy only).
- ``ul2``: ``ul2.presets.ul2()`` (six span-corruption denoisers and a prefix LM, uniform rates)
  at ``inputs_length=512`` with ``Sentinels.t5(32228, 128)`` (X(3, .5) needs 128 sentinels).
  Every denoiser fills the 512 inputs from a different raw length (511 to 1006 tokens), so a
  fixed row width would be too long for some of them. Instead each key ``k`` gets a row of
  exactly the planned ``raw_length`` of the denoiser that ``k`` draws: a probe call on rows of
  the shortest planned length finds the denoiser of every key (the denoisers put distinct
  numbers of sentinels into the inputs at that length), then ragged rows of the planned
  lengths are generated. Each row is then as long as the training pipeline would feed it, and
  throughput per raw token compares fairly with ``t5`` (the mixture also writes 512-wide
  targets). The NumPy baseline gets the same rows and the same per-row denoiser choices.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import ul2

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from baselines.numpy_collator import NumpyCollator, Prefix, Span  # noqa: E402

BATCH = 256
INPUTS_LENGTH = 512
EOS_ID, PAD_ID, SEED = 1, 0, 0
T5_SENTINELS = (32128, 100)
UL2_SENTINELS = (32228, 128)

Rows = npt.NDArray[np.int32] | list[npt.NDArray[np.int32]]
Output = dict[str, npt.NDArray[Any]]


@dataclass
class Workload:
    """One batch, the two collators that process it and a memcpy of the output's size."""

    name: str
    inputs_length: int
    targets_length: int
    rows: Rows
    keys: npt.NDArray[np.int64]
    choices: npt.NDArray[np.intp]  # index (in mixture/plan) of the denoiser of each row
    mixture: ul2.Mixture
    plan: ul2.Plan
    sentinels: ul2.Sentinels
    collator: ul2.Collator
    baseline: NumpyCollator | None  # None where the NumPy baseline has no equivalent (packing)
    baseline_hf: NumpyCollator | None  # the same with HF's exact segment counting (np.unique)
    copy_src: npt.NDArray[np.int32]
    copy_dst: npt.NDArray[np.int32]

    @property
    def batch(self) -> int:
        return len(self.rows)

    @property
    def raw_tokens(self) -> int:
        return sum(len(r) for r in self.rows)

    @property
    def sentinel_floor(self) -> int:
        """Smallest sentinel id: generated tokens stay below it, sentinels are at or above."""
        return int(min(self.sentinels.ids))

    @property
    def vocab_size(self) -> int:
        assert self.sentinels.vocab_size is not None
        return self.sentinels.vocab_size

    def run_ul2(self) -> Output:
        return self.collator(self.rows, self.keys)

    def run_numpy(self) -> Output | None:
        return None if self.baseline is None else self.baseline(self.rows, self.choices)

    def run_numpy_hf(self) -> Output | None:
        return None if self.baseline_hf is None else self.baseline_hf(self.rows, self.choices)

    def run_memcpy(self) -> npt.NDArray[np.int32]:
        np.copyto(self.copy_dst, self.copy_src)
        return self.copy_dst


def baseline_denoiser(d: ul2.Denoiser) -> Span | Prefix:
    if isinstance(d, ul2.SpanCorruption) and d.num_spans is None and not d.random_roll and not d.prefix:
        return Span(d.mean_span_length, d.noise_density)
    if isinstance(d, ul2.PrefixLM) and not d.prefix:
        return Prefix(d.suffix_density)
    raise ValueError(f"the NumPy baseline has no equivalent of {d!r}")


def _workload(
    name: str,
    mixture: ul2.Mixture,
    sentinels: ul2.Sentinels,
    batch: int,
    seed: int,
    rows_for: Callable[
        [ul2.Collator, ul2.Plan, npt.NDArray[np.int64], np.random.Generator],
        tuple[Rows, npt.NDArray[np.intp]],
    ],
) -> Workload:
    rng = np.random.default_rng(seed)
    plan = ul2.plan(mixture, sentinels=sentinels, inputs_length=INPUTS_LENGTH)
    collator = ul2.Collator(
        mixture,
        sentinels=sentinels,
        inputs_length=INPUTS_LENGTH,
        eos_id=EOS_ID,
        pad_id=PAD_ID,
        format="hf",
        seed=SEED,
    )
    targets_length = max(r.targets_length for r in plan)  # the Collator's default
    keys = np.arange(batch, dtype=np.int64)
    rows, choices = rows_for(collator, plan, keys, rng)
    assert sentinels.vocab_size is not None
    baseline, baseline_hf = (
        NumpyCollator(
            [baseline_denoiser(d) for d in mixture.denoisers],
            vocab_size=sentinels.vocab_size,
            inputs_length=INPUTS_LENGTH,
            targets_length=targets_length,
            eos_id=EOS_ID,
            pad_id=PAD_ID,
            seed=SEED,
            exact_hf=exact,
        )
        for exact in (False, True)
    )
    out_elems = batch * (2 * INPUTS_LENGTH + 3 * targets_length)
    src = rng.integers(0, 1 << 30, size=out_elems, dtype=np.int32)
    return Workload(
        name,
        INPUTS_LENGTH,
        targets_length,
        rows,
        keys,
        choices,
        mixture,
        plan,
        sentinels,
        collator,
        baseline,
        baseline_hf,
        src,
        np.empty_like(src),
    )


def _tokens(rng: np.random.Generator, sentinels: ul2.Sentinels, shape: int | tuple[int, ...]) -> Any:
    return rng.integers(2, min(sentinels.ids), size=shape, dtype=np.int32)


def t5_workload(batch: int = BATCH, seed: int = 0) -> Workload:
    """T5 span corruption: ``batch`` rows of 568 tokens."""
    sentinels = ul2.Sentinels.t5(*T5_SENTINELS)

    def rows_for(c: ul2.Collator, plan: ul2.Plan, keys: Any, rng: np.random.Generator) -> Any:
        return _tokens(rng, sentinels, (len(keys), plan[0].raw_length)), np.zeros(len(keys), dtype=np.intp)

    return _workload("t5", ul2.presets.t5(), sentinels, batch, seed, rows_for)


LARGE_BATCH = 4096


def t5_large_workload(seed: int = 0) -> Workload:
    """The thread-scaling workload: ``t5`` with 4096 rows (2.3 M raw tokens, about 22 MB of
    outputs), so handing the call to the pool is small next to the work. Only ul2 and memcpy
    run: the NumPy baselines' ratios are measured on ``t5``."""
    w = t5_workload(batch=LARGE_BATCH, seed=seed)
    w.name, w.baseline, w.baseline_hf = f"t5_{LARGE_BATCH}", None, None
    return w


def probe_choices(collator: ul2.Collator, plan: ul2.Plan, keys: Any, rng: np.random.Generator) -> Any:
    """The denoiser each key draws, read off one call on rows of the shortest planned length:
    at that length each denoiser puts a different number of sentinels into the inputs."""
    sentinels = collator.sentinels
    length = min(r.raw_length for r in plan)
    spans = [
        ul2.span_counts(length, r.denoiser.noise_density, r.denoiser.mean_span_length)[1]
        if isinstance(r.denoiser, ul2.SpanCorruption)
        else 0
        for r in plan
    ]
    if len(set(spans)) != len(spans):
        raise ValueError(f"probe: denoisers give the same sentinel counts {spans} at length {length}")
    out = collator(_tokens(rng, sentinels, (len(keys), length)), keys)
    found = (out["input_ids"] >= min(sentinels.ids)).sum(axis=1)
    index = {s: i for i, s in enumerate(spans)}
    unknown = set(found.tolist()) - set(index)
    if unknown:
        raise ValueError(f"probe: sentinel counts {sorted(unknown)} match no denoiser (expected {spans})")
    return np.array([index[s] for s in found.tolist()], dtype=np.intp)


def ul2_workload(batch: int = BATCH, seed: int = 0) -> Workload:
    """The UL2 mixture: each key's row has the planned raw length of the denoiser it draws."""
    sentinels = ul2.Sentinels.t5(*UL2_SENTINELS)

    def rows_for(c: ul2.Collator, plan: ul2.Plan, keys: Any, rng: np.random.Generator) -> Any:
        choices = probe_choices(c, plan, keys, rng)
        lengths = [plan[i].raw_length for i in choices]
        flat = _tokens(rng, sentinels, sum(lengths))
        bounds = np.cumsum([0, *lengths])
        return [flat[a:b] for a, b in itertools.pairwise(bounds)], choices

    return _workload("ul2", ul2.presets.ul2(), sentinels, batch, seed, rows_for)


SEQUENCE_LENGTH = 1024


def decoder_workload(batch: int = BATCH, seed: int = 0) -> Workload:
    """Decoder-only prefix LM, packed: ``presets.ul2()`` at ``sequence_length=1024`` with
    ``pack=True`` on short documents (64 to the shortest planned raw length, uniform), so each
    output row holds several examples. The NumPy baseline has no packing: only memcpy compares."""
    sentinels = ul2.Sentinels.t5(*UL2_SENTINELS)
    mixture = ul2.presets.ul2()
    plan = ul2.plan(mixture, sentinels=sentinels, sequence_length=SEQUENCE_LENGTH)
    collator = ul2.Collator(
        mixture, sentinels=sentinels, sequence_length=SEQUENCE_LENGTH, pack=True, seed=SEED
    )
    rng = np.random.default_rng(seed)
    lengths = rng.integers(64, min(r.raw_length for r in plan) + 1, size=batch)
    rows = [_tokens(rng, sentinels, int(n)) for n in lengths]
    keys = np.arange(batch, dtype=np.int64)
    written = sum(a.size for a in collator(rows, keys).values())  # what one call writes
    src = rng.integers(0, 1 << 30, size=written, dtype=np.int32)
    return Workload(
        "decoder1024",
        SEQUENCE_LENGTH,
        0,
        rows,
        keys,
        np.zeros(batch, dtype=np.intp),
        mixture,
        plan,
        sentinels,
        collator,
        None,
        None,
        src,
        np.empty_like(src),
    )


WORKLOADS: dict[str, Callable[[], Workload]] = {
    "t5": t5_workload,
    f"t5_{LARGE_BATCH}": t5_large_workload,
    "ul2": ul2_workload,
    "decoder1024": decoder_workload,
}


def minor_faults() -> int | None:
    """Minor page faults of this process so far (None where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


Timing = tuple[float, float, int, float | None]


def time_best(fn: Callable[[], object], repeats: int, budget_s: float) -> Timing:
    """(best s, median s, calls, minor page faults per call) over up to ``repeats`` calls after
    one warm-up call; stops early (after at least 3 calls) once ``budget_s`` is spent."""
    fn()
    times: list[float] = []
    faults = minor_faults()
    start = time.perf_counter()
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    after = minor_faults()
    per_call = None if faults is None or after is None else (after - faults) / len(times)
    return min(times), statistics.median(times), len(times), per_call


def dram_copy_bandwidth(megabytes: int) -> float:
    """Bytes per second of ``np.copyto`` between two arrays far larger than the caches: the
    memory-bound line (the per-workload memcpy copies a batch's output bytes, which stay in
    cache). Best of 5 copies."""
    src = np.ones(megabytes << 18, dtype=np.int32)
    dst = np.empty_like(src)
    best, _, _, _ = time_best(lambda: np.copyto(dst, src), 5, 10.0)
    return src.nbytes / best


def measure(w: Workload, repeats: int, budget_s: float) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    cases: list[tuple[str, int | None, Callable[[], object]]] = [
        ("ul2", 1, w.run_ul2),
        ("ul2", None, w.run_ul2),
        *([("numpy", 1, w.run_numpy)] if w.baseline is not None else []),
        *([("numpy_hf", 1, w.run_numpy_hf)] if w.baseline_hf is not None else []),
        ("memcpy", 1, w.run_memcpy),
    ]
    for impl, threads, fn in cases:
        if impl == "ul2":
            ul2.set_num_threads(threads)
        try:
            n_threads = ul2.get_num_threads() if impl == "ul2" else 1
            best, median, count, faults = time_best(fn, repeats, budget_s)
        finally:
            ul2.set_num_threads(None)
        results.append(
            {
                "workload": w.name,
                "impl": impl,
                "threads": n_threads,
                "batch": w.batch,
                "raw_tokens": w.raw_tokens,
                "best_s": best,
                "median_s": median,
                "repeats": count,
                "mtok_per_s": w.raw_tokens / best / 1e6,
                "page_faults_per_call": faults,
            }
        )
    numpy_s = next((r["best_s"] for r in results if r["impl"] == "numpy"), None)
    numpy_hf_s = next((r["best_s"] for r in results if r["impl"] == "numpy_hf"), None)
    memcpy_s: float = next(r["best_s"] for r in results if r["impl"] == "memcpy")
    for r in results:
        r["output_bytes"] = w.copy_src.nbytes
        r["x_numpy"] = None if numpy_s is None else numpy_s / r["best_s"]
        r["x_numpy_hf"] = None if numpy_hf_s is None else numpy_hf_s / r["best_s"]
        r["x_memcpy"] = memcpy_s / r["best_s"]
    return results


def summary(results: list[dict[str, Any]], dram_bps: float) -> list[tuple[str, float, str]]:
    """The issue's targets as (what, measured ratio, target) from one run; ``dram_bps`` is
    ``dram_copy_bandwidth``'s, for the out-of-cache memcpy line."""

    def best(workload: str, impl: str, threads: int | None = None) -> dict[str, Any]:
        return next(
            r
            for r in results
            if r["workload"] == workload
            and r["impl"] == impl
            and (threads is None or r["threads"] == threads)
        )

    t5_1, ul2_1 = best("t5", "ul2", 1), best("ul2", "ul2", 1)
    cost_t5 = t5_1["best_s"] / t5_1["raw_tokens"]
    cost_ul2 = ul2_1["best_s"] / ul2_1["raw_tokens"]
    out = [
        ("t5, 1 thread: x NumPy collator (bincount, tuned)", t5_1["x_numpy"], ">= 100"),
        ("t5, 1 thread: x NumPy collator (HF's exact np.unique)", t5_1["x_numpy_hf"], ">= 100"),
        ("t5, 1 thread: x memcpy (output bytes, in cache)", t5_1["x_memcpy"], ">= 0.5"),
        (
            "t5, 1 thread: x memcpy (output bytes at out-of-cache copy speed)",
            t5_1["output_bytes"] / dram_bps / t5_1["best_s"],
            ">= 0.5",
        ),
        ("ul2 mixture cost per raw token / t5's (1 thread)", cost_ul2 / cost_t5, "<= 1.5"),
    ]
    for name, goal in (("t5", "none: a small batch"), (f"t5_{LARGE_BATCH}", ">= 1.8")):
        one = best(name, "ul2", 1)
        multi = [r for r in results if r["workload"] == name and r["impl"] == "ul2" and r["threads"] > 1]
        if multi:
            ratio = one["best_s"] / multi[0]["best_s"]
            out.append((f"{name}, {multi[0]['threads']} threads / 1 thread", ratio, goal))
    return out


def criterion_dir() -> Path:
    """Where criterion writes its estimates (``$CARGO_TARGET_DIR/criterion`` or ``target/criterion``)."""
    return Path(os.environ.get("CARGO_TARGET_DIR", HERE.parent / "target")) / "criterion"


def floor_results(criterion: Path) -> list[dict[str, Any]]:
    """The cases of criterion's group ``floor`` (named ``t5_<inputs>_<rows>x<raw>``) with the
    time of ul2, the floor kernel and the memcpy and their ratios; empty where the group has not
    run. Each time is criterion's best sample (the mean of its calls), as this report takes the
    best of its own repeats: other load on the machine only adds time."""
    group = criterion / "floor"
    out: list[dict[str, Any]] = []
    for case in sorted(group.glob("t5_*_*x*")):
        times = {}
        for impl in ("ul2", "floor", "memcpy"):
            sample = case / impl / "new" / "sample.json"
            if sample.is_file():
                d = json.loads(sample.read_text())
                times[impl] = min(t / n for t, n in zip(d["times"], d["iters"], strict=True)) * 1e-9
        if len(times) < 3:
            continue
        _, inputs, shape = case.name.split("_")
        rows, raw = (int(x) for x in shape.split("x"))
        out.append(
            {
                "case": case.name,
                "inputs_length": int(inputs),
                "rows": rows,
                "raw_length": raw,
                **{f"{impl}_s": t for impl, t in times.items()},
                "ul2_ns_per_token": times["ul2"] / (rows * raw) * 1e9,
                "ul2_over_floor": times["ul2"] / times["floor"],
                "ul2_over_memcpy": times["ul2"] / times["memcpy"],
                "floor_over_memcpy": times["floor"] / times["memcpy"],
            }
        )
    out.sort(key=lambda r: (r["inputs_length"] != INPUTS_LENGTH, r["inputs_length"], r["rows"]))
    return out


def floor_table(floor: list[dict[str, Any]]) -> str:
    head = (
        "inputs",
        "rows",
        "raw",
        "ul2 µs",
        "floor µs",
        "memcpy µs",
        "ul2 ns/tok",
        "ul2/floor",
        "ul2/memcpy",
        "floor/memcpy",
    )
    rows = [
        (
            str(r["inputs_length"]),
            str(r["rows"]),
            str(r["raw_length"]),
            f"{r['ul2_s'] * 1e6:.1f}",
            f"{r['floor_s'] * 1e6:.1f}",
            f"{r['memcpy_s'] * 1e6:.1f}",
            f"{r['ul2_ns_per_token']:.2f}",
            f"{r['ul2_over_floor']:.2f}",
            f"{r['ul2_over_memcpy']:.2f}",
            f"{r['floor_over_memcpy']:.2f}",
        )
        for r in floor
    ]
    return aligned(head, rows, left=0)


def floor_targets(floor: list[dict[str, Any]]) -> list[tuple[str, float, str]]:
    """The floor's targets: ul2 within 1.3x of the floor at 256 rows, and 4096-row batches
    within 1.3x of the 256-row cost per token (the step out of cache)."""
    at_512 = {r["rows"]: r for r in floor if r["inputs_length"] == INPUTS_LENGTH}
    out = []
    if BATCH in at_512:
        out.append(
            (f"t5 {BATCH} rows, 1 thread: ul2 / floor (time)", at_512[BATCH]["ul2_over_floor"], "<= 1.3")
        )
    if BATCH in at_512 and LARGE_BATCH in at_512:
        per_token = at_512[LARGE_BATCH]["ul2_ns_per_token"] / at_512[BATCH]["ul2_ns_per_token"]
        out.append(
            (f"t5 {LARGE_BATCH} rows / {BATCH} rows, 1 thread: ul2 cost per token", per_token, "<= 1.3")
        )
    return out


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "workload",
        "impl",
        "threads",
        "M raw tok/s",
        "best ms",
        "median ms",
        "x NumPy",
        "x NumPy-HF",
        "x memcpy",
        "faults/call",
    )

    def cells(r: dict[str, Any]) -> tuple[str, ...]:
        faults = r["page_faults_per_call"]
        x_numpy = "-" if r["x_numpy"] is None else f"{r['x_numpy']:.1f}"
        x_numpy_hf = "-" if r["x_numpy_hf"] is None else f"{r['x_numpy_hf']:.1f}"
        return (
            r["workload"],
            r["impl"],
            str(r["threads"]),
            f"{r['mtok_per_s']:.1f}",
            f"{r['best_s'] * 1e3:.3f}",
            f"{r['median_s'] * 1e3:.3f}",
            x_numpy,
            x_numpy_hf,
            f"{r['x_memcpy']:.3f}",
            "-" if faults is None else f"{faults:.0f}",
        )

    return aligned(head, [cells(r) for r in results], left=2)


def aligned(head: tuple[str, ...], rows: list[tuple[str, ...]], *, left: int) -> str:
    """``head`` and ``rows`` as text columns: the first ``left`` columns flush left, the rest right."""
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(wd) if i < left else c.rjust(wd)
            for i, (c, wd) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join(line(x) for x in [head, *rows])


def chart(results: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    labels = [f"{r['workload']}\n{r['impl']} ({r['threads']}t)" for r in results]
    colors = {"ul2": "tab:blue", "numpy": "tab:orange", "numpy_hf": "tab:red", "memcpy": "tab:gray"}
    fig, ax = plt.subplots(figsize=(max(6, len(results) * 0.9), 4))
    heights = [r["mtok_per_s"] for r in results]
    ax.bar(range(len(results)), heights, color=[colors[r["impl"]] for r in results])
    ax.set_xticks(range(len(results)), labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("M raw tokens / s (log)")
    ax.set_title("ul2 Collator vs NumPy baseline vs memcpy of the output bytes")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run, noisier numbers)")
    p.add_argument("--out", type=Path, default=HERE.parent / "bench-results", help="output folder")
    args = p.parse_args(argv)
    repeats, budget_s = (10, 0.3) if args.quick else (200, 2.0)
    started = time.perf_counter()
    results = []
    for make in WORKLOADS.values():
        results.extend(measure(make(), repeats, budget_s))
    print(table(results))
    # 512 MB each way outruns the caches (480 MB of L3 here); a --quick smoke run copies less.
    dram_bps = dram_copy_bandwidth(64 if args.quick else 512)
    floor = floor_results(criterion_dir())
    if floor:
        print("\nul2 next to its floor (criterion group floor; one thread; time ratios):")
        print(floor_table(floor))
    else:
        print(f"\nno floor figures: run `cargo bench -p ul2-benches -- floor` first ({criterion_dir()})")
    targets = summary(results, dram_bps) + floor_targets(floor)
    print()
    for what, value, goal in targets:
        print(f"{what}: {value:.2f} (target {goal})")
    meta = {
        "ul2": ul2.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "quick": args.quick,
        "repeats": repeats,
        "budget_s": budget_s,
        "dram_copy_gb_per_s": dram_bps / 1e9,
        "inputs_length": INPUTS_LENGTH,
        "unix_time": time.time(),
        "wall_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"meta": meta, "results": results, "floor": floor, "targets": [list(t) for t in targets]}
    (args.out / "latest.json").write_text(json.dumps(document, indent=2) + "\n")
    written = [str(args.out / "latest.json")]
    if chart(results, args.out / "latest.png"):
        written.append(str(args.out / "latest.png"))
    print(f"wrote {', '.join(written)} in {meta['wall_s']:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
