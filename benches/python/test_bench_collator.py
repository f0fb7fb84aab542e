"""Collator benchmarks: ul2 (one thread, all threads), the NumPy baseline and a memcpy, with
one pytest-benchmark group per workload so every ratio comes from the same run.

Timed: ``pytest benches/python --benchmark-only``. As a smoke test (``make test`` passes
``--benchmark-disable``) each benchmark runs its function once, and every benchmark checks what
its function produced: shapes, masks, EOS, padding, the decoder shift, planned lengths, the
sentinel count and the round trip (inputs + targets give back the row).

Workloads (built in ``benches/report.py``, which times the same ones with ``perf_counter``):

- ``t5``: ``presets.t5()``, 256 int32 rows of 568 tokens (T5's raw length for 512 inputs).
- ``ul2``: ``presets.ul2()`` with ``Sentinels.t5(32228, 128)``. Its denoisers fill the 512
  inputs from raw lengths 511 to 1006, so no single row width fits them all. Each key gets a
  row of exactly the planned ``raw_length`` of the denoiser it draws (found by one probe call:
  at the shortest planned length every denoiser puts a different number of sentinels into the
  inputs). That is what a pipeline feeding ``ul2.plan``'s lengths does, so throughput per raw
  token is comparable with ``t5``. The baseline gets the same rows and denoiser choices.

Throughput = ``extra_info["raw_tokens"]`` / time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import report
import ul2
from baselines.numpy_collator import IGNORE_INDEX, random_spans_noise_mask, t5_counts
from report import EOS_ID, PAD_ID, Workload
from ul2.testing import check_example

GROUPS = {
    "t5": "t5: 256 rows x 568 tokens",
    "ul2": "ul2 mixture: 256 rows at their planned raw lengths",
}
NAMES = {"input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask"}


@pytest.fixture(scope="module", params=["t5", "ul2"])
def workload(request: pytest.FixtureRequest) -> Workload:
    return report.WORKLOADS[request.param]()


@pytest.fixture(autouse=True)
def _all_threads_afterwards() -> Iterator[None]:
    yield
    ul2.set_num_threads(None)


def check_collated(w: Workload, out: dict[str, npt.NDArray[Any]]) -> None:
    b, width_i, width_t = w.batch, w.inputs_length, w.targets_length
    assert set(out) == NAMES
    for name, arr in out.items():
        assert arr.dtype == np.int32, name
        assert arr.shape == (b, width_t if name.startswith(("labels", "decoder")) else width_i), name
    inp, lab = out["input_ids"], out["labels"]
    li, lt = out["attention_mask"].sum(axis=1), out["decoder_attention_mask"].sum(axis=1)
    in_on, tg_on = np.arange(width_i) < li[:, None], np.arange(width_t) < lt[:, None]
    assert np.array_equal(out["attention_mask"], in_on)
    assert np.array_equal(out["decoder_attention_mask"], tg_on)
    assert (inp[~in_on] == PAD_ID).all() and (lab[~tg_on] == IGNORE_INDEX).all() and (lab[tg_on] >= 0).all()
    every = np.arange(b)
    assert (inp[every, li - 1] == EOS_ID).all() and (lab[every, lt - 1] == EOS_ID).all()
    shifted = np.where(lab == IGNORE_INDEX, PAD_ID, lab)[:, :-1]
    assert (out["decoder_input_ids"][:, 0] == PAD_ID).all()
    assert np.array_equal(out["decoder_input_ids"][:, 1:], shifted)
    floor, vocab = w.sentinel_floor, w.vocab_size
    ids = np.asarray(w.sentinels.ids)
    assert np.array_equal(ids, vocab - 1 - np.arange(len(ids)))  # T5's layout: the k-th is vocab - 1 - k
    for i in range(b):
        row, planned = w.rows[i], w.plan[int(w.choices[i])]
        x, y = inp[i, : li[i] - 1], lab[i, : lt[i] - 1]
        if isinstance(planned.denoiser, ul2.PrefixLM):
            assert x.size >= 1 and y.size >= 1 and not (x >= floor).any() and not (y >= floor).any()
            assert np.array_equal(np.concatenate([x, y]), row)
        else:
            assert len(row) == planned.raw_length
            assert (li[i], lt[i]) == (planned.inputs_length, planned.targets_length), i
            assert np.count_nonzero(x >= floor) == planned.spans
            # Sentinels in order in both, at most one more (trailing) in the targets, the round trip
            # gives the row back, the exact noise count; and no noise span is empty.
            check_example(
                row, inp[i, : li[i]], lab[i, : lt[i]], planned.denoiser, sentinels=w.sentinels, eos_id=EOS_ID
            )
            starts = np.append(np.flatnonzero(y >= floor), len(y))
            assert (np.diff(starts)[: planned.spans] >= 2).all(), f"row {i}: a noise span is empty"


def _bench(benchmark: Any, w: Workload, fn: Any) -> Any:
    benchmark.group = GROUPS[w.name]
    benchmark.extra_info["raw_tokens"] = w.raw_tokens
    benchmark.extra_info["threads"] = ul2.get_num_threads()
    return benchmark(fn)


def test_ul2_one_thread(benchmark: Any, workload: Workload) -> None:
    ul2.set_num_threads(1)
    check_collated(workload, _bench(benchmark, workload, workload.run_ul2))


def test_ul2_all_threads(benchmark: Any, workload: Workload) -> None:
    ul2.set_num_threads(None)
    check_collated(workload, _bench(benchmark, workload, workload.run_ul2))


def test_numpy_baseline(benchmark: Any, workload: Workload) -> None:
    check_collated(workload, _bench(benchmark, workload, workload.run_numpy))


def test_memcpy(benchmark: Any, workload: Workload) -> None:
    out = _bench(benchmark, workload, workload.run_memcpy)
    assert out.nbytes == sum(a.nbytes for a in workload.run_ul2().values())
    assert np.array_equal(out, workload.copy_src)


# The baseline itself: it must do the same work as ul2, or the ratios mean nothing.

MIXTURE_PARAMS = [
    (d.mean_span_length, d.noise_density)
    for d in ul2.presets.ul2().denoisers
    if isinstance(d, ul2.SpanCorruption)
]


def test_baseline_counts_are_t5s() -> None:
    for mu, r in MIXTURE_PARAMS:
        for length in range(1100):
            assert t5_counts(length, r, mu) == ul2.span_counts(length, r, mu), (length, r, mu)


@pytest.mark.parametrize("exact_hf", [False, True])
@pytest.mark.parametrize(
    ("length", "mu", "r"), [(568, 3.0, 0.15), (766, 3.0, 0.5), (1006, 64.0, 0.5), (2, 3.0, 0.15)]
)
def test_baseline_mask_has_t5_structure(length: int, mu: float, r: float, exact_hf: bool) -> None:
    rng = np.random.Generator(np.random.PCG64(0))
    noise, spans = ul2.span_counts(length, r, mu)
    for _ in range(20):
        mask = random_spans_noise_mask(length, r, mu, rng, exact_hf)
        starts = np.flatnonzero(mask & ~np.concatenate([[False], mask[:-1]]))
        assert mask.shape == (length,) and not mask[0] and mask[-1]
        assert mask.sum() == noise and len(starts) == spans


def test_baseline_counting_methods_agree() -> None:
    # bincount and HF's np.unique count the same segments: same draws, same masks.
    def masks(exact_hf: bool) -> list[npt.NDArray[np.bool_]]:
        rng = np.random.Generator(np.random.PCG64(7))
        return [random_spans_noise_mask(568, 0.15, 3.0, rng, exact_hf) for _ in range(50)]

    for a, b in zip(masks(False), masks(True), strict=True):
        np.testing.assert_array_equal(a, b)


def test_baseline_shapes_and_lengths_match_ul2(workload: Workload) -> None:
    ours, theirs = workload.run_ul2(), workload.run_numpy()

    def layout(out: dict[str, npt.NDArray[Any]]) -> dict[str, Any]:
        return {k: (v.shape, v.dtype) for k, v in out.items()}

    assert layout(ours) == layout(theirs)
    if workload.name == "t5":
        assert ours["input_ids"].shape == (report.BATCH, 512) and len(workload.rows[0]) == 568
    # Span-corruption lengths are deterministic, so they agree row by row (prefix LM splits differ).
    kinds = [workload.plan[int(c)].denoiser for c in workload.choices]
    spans = np.array([isinstance(d, ul2.SpanCorruption) for d in kinds])
    for name in ("attention_mask", "decoder_attention_mask"):
        assert np.array_equal(ours[name][spans], theirs[name][spans]), name
    # Different generators: same structure, different noise.
    assert not np.array_equal(ours["input_ids"], theirs["input_ids"])


# Decoder-only packed rows: only ul2 and memcpy (the NumPy baseline does not pack).


@pytest.fixture(scope="module")
def decoder() -> Workload:
    return report.decoder_workload()


def check_packed(w: Workload, out: dict[str, npt.NDArray[Any]]) -> None:
    seg, pos, ids = out["segment_ids"], out["positions"], out["input_ids"]
    assert ids.shape[1] == report.SEQUENCE_LENGTH and ids.shape[0] < w.batch  # several examples per row
    assert int(seg.max(axis=1).sum()) == w.batch  # every example in exactly one segment
    starts = (pos == 0) & (seg > 0)
    assert np.array_equal(np.cumsum(starts, axis=1) * (seg > 0), seg)
    assert out["cu_seqlens"][-1] == ids.size
    loss = out["labels"] != IGNORE_INDEX
    assert (out["bidirectional_mask"].astype(bool) & loss).sum() == 0  # prefix and targets never overlap
    tokens = int((seg > 0).sum())
    assert tokens == int(out["attention_mask"].sum())
    # Every raw token, plus 2 EOS per example and the prompts, is in the rows; sentinels add the rest.
    assert tokens >= w.raw_tokens + 2 * w.batch


@pytest.mark.parametrize("threads", [1, None])
def test_ul2_decoder_packed(benchmark: Any, decoder: Workload, threads: int | None) -> None:
    ul2.set_num_threads(threads)
    try:
        benchmark.group = "decoder-only 1024, packed"
        check_packed(decoder, benchmark(decoder.run_ul2))
    finally:
        ul2.set_num_threads(None)


def test_memcpy_decoder(benchmark: Any, decoder: Workload) -> None:
    benchmark.group = "decoder-only 1024, packed"
    out = benchmark(decoder.run_memcpy)
    assert out.nbytes == sum(a.nbytes for a in decoder.run_ul2().values())
    assert np.array_equal(out, decoder.copy_src)
