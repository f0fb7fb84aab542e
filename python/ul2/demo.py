"""``ul2 demo``: what the denoisers do to real text, on the built-in corpus."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from . import presets
from ._ul2 import SentinelOverflowError
from .collate import Collator
from .denoisers import Mixture
from .plan import _label, plan
from .sources import ByteTokenizer, stdlib_files, stdlib_stream

_COLOR = sys.stdout.isatty() and os.environ.get("NO_COLOR") is None


def _paint(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if _COLOR else text


def _show(tok: ByteTokenizer, ids: Any, width: int = 240) -> str:
    text = tok.decode(ids).replace("\n", "⏎")
    if len(text) > width:
        text = text[: width - 1] + "…"
    # Highlight sentinels so the spans stand out.
    parts = text.split("<extra_id_")
    return parts[0] + "".join(
        _paint("<extra_id_" + p.split(">", 1)[0] + ">", "1;33") + p.split(">", 1)[1] if ">" in p else p
        for p in parts[1:]
    )


def main(inputs_length: int = 512, seed: int = 0) -> None:
    tok = ByteTokenizer()
    t0 = time.perf_counter()
    stream = stdlib_stream(tok, max_bytes=16 << 20)
    print(
        _paint("ul2 demo", "1"),
        f"— built-in corpus: {len(stdlib_files())} stdlib files, "
        f"{len(stream) / 1e6:.1f} M byte tokens (ByT5 ids, 125 sentinels), "
        f"read in {time.perf_counter() - t0:.1f} s\n",
    )

    mix = presets.ul2(prompts=tok.encode)
    strict = tok.sentinels()
    print(_paint(f"Plan: presets.ul2() at inputs {inputs_length} / targets {inputs_length}", "1"))
    try:
        plan(mix, sentinels=strict, inputs_length=inputs_length, targets_length=inputs_length)
    except SentinelOverflowError as e:
        print(_paint("  with on_overflow='error': ", "2") + str(e))
        print(_paint("  so the demo uses on_overflow='cap':", "2"))
    sentinels = tok.sentinels(on_overflow="cap")
    table = plan(mix, sentinels=sentinels, inputs_length=inputs_length, targets_length=inputs_length)
    print("  " + repr(table).replace("\n", "\n  ") + "\n")

    print(_paint("One example per denoiser (key 0 of a collator for each):", "1"))
    start = 0
    for row in table:
        raw = stream[start : start + row.raw_length]
        start += row.raw_length
        c = Collator(
            Mixture([(row.denoiser, 1.0)]),
            sentinels=sentinels,
            inputs_length=inputs_length,
            targets_length=inputs_length,
            seed=seed,
        )
        out = c(raw[None, :], keys=[0])
        n_in, n_tgt = int(out["attention_mask"].sum()), int(out["decoder_attention_mask"].sum())
        print(_paint(f"● {_label(row.denoiser)}", "1;36"), f"raw {len(raw)} → inputs {n_in}, targets {n_tgt}")
        print("  inputs : " + _show(tok, out["input_ids"][0][:n_in]))
        print("  targets: " + _show(tok, out["labels"][0][:n_tgt]))
    print()

    t5 = Collator(presets.t5(), sentinels=sentinels, inputs_length=512)
    rows = stream[: 256 * 568].reshape(256, 568)
    t5(rows)
    best = min(_timed(t5, rows) for _ in range(5))
    print(
        _paint("Throughput", "1"),
        f"presets.t5(), 256 x 568 raw tokens: {rows.size / best / 1e6:.0f} M tokens/s "
        f"({best * 1e3:.2f} ms per batch, {t5.__class__.__name__} on all cores)",
    )


def _timed(c: Collator, rows: Any) -> float:
    t = time.perf_counter()
    c(rows)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
