"""Sample index and streaming over a large memory-mapped corpus.

Usage (from the repository root)::

    .venv/bin/python benches/stream.py [--tokens 1000000000] [--out bench-results]

Builds a sparse uint16 memmap of ``--tokens`` tokens (nothing is written but the file's
length), then measures, in one process:

- the sample index of a ``DenoisingDataset`` with the ``ul2()`` mixture at 512/512: samples
  per second to build it, and bytes per sample it holds;
- streaming every sample through ``ds.batch`` in batches of 1024: tokens per second and the
  process's anonymous resident memory (``RssAnon``: heap, not the file's page cache) before,
  during and after — it stays flat because nothing is copied or kept.

Results go to stdout and ``<out>/stream.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import ul2


def rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=10**9)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--out", default="bench-results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokens.u16"
        with open(path, "wb") as f:  # sparse: reads as zeros, costs no disk
            f.truncate(2 * args.tokens)
        tokens = np.memmap(path, dtype=np.uint16, mode="r", shape=(args.tokens,))
        sentinels = ul2.Sentinels.t5(32228, 128)
        start_mb = rss_anon_mb()
        t = time.perf_counter()
        ds = ul2.DenoisingDataset(
            tokens, ul2.presets.ul2(), sentinels=sentinels, inputs_length=512, targets_length=512
        )
        build_s = time.perf_counter() - t
        index_mb = rss_anon_mb()

        samples = ds.num_samples
        peak_mb = index_mb
        t = time.perf_counter()
        used = 0
        for first in range(0, samples, args.batch):
            keys = np.arange(first, min(first + args.batch, samples))
            out = ds.batch(keys)
            used += int(out["attention_mask"].sum()) + int((out["labels"] != -100).sum())
            peak_mb = max(peak_mb, rss_anon_mb())
        stream_s = time.perf_counter() - t
        end_mb = rss_anon_mb()

    result = {
        "tokens": args.tokens,
        "samples": samples,
        "tail": ds.tail,
        "index_build_s": build_s,
        "index_samples_per_s": samples / build_s,
        "index_bytes_per_sample": ds.index_bytes / samples,
        "stream_s": stream_s,
        "stream_raw_tokens_per_s": (args.tokens - ds.tail) / stream_s,
        "rss_anon_mb": {"start": start_mb, "after_index": index_mb, "peak_streaming": peak_mb, "end": end_mb},
        "threads": ul2.get_num_threads(),
    }
    print(f"{args.tokens:,} tokens -> {samples:,} samples (tail {ds.tail})")
    print(
        f"index: built in {build_s:.2f} s = {samples / build_s / 1e6:.1f} M samples/s, "
        f"{ds.index_bytes / samples:.2f} bytes/sample"
    )
    print(
        f"stream: {stream_s:.1f} s = {(args.tokens - ds.tail) / stream_s / 1e6:.0f} M raw tokens/s "
        f"on {ul2.get_num_threads()} threads"
    )
    print(
        f"RssAnon MB: start {start_mb:.0f}, after index {index_mb:.0f}, peak while streaming {peak_mb:.0f}, "
        f"end {end_mb:.0f}"
    )
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "stream.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
