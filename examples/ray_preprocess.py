"""Preprocess a corpus into UL2 examples with Ray Data and write them as Parquet.

Run: python examples/ray_preprocess.py OUT_DIR [--rows 2000] [--num-cpus 2]

Token rows (here: the built-in corpus as byte-level ids, cut into rows that fit every denoiser
of the mixture) with a stable "id" column become a Ray Dataset; ul2.ray.denoise maps it through
a ul2.Collator with map_batches, each row's example key being its id, so the result does not
depend on how Ray splits the work; write_parquet writes it. On a cluster, point ray.init at it
and read the rows with ray.data.read_parquet instead. Starts a local Ray instance and shuts it
down; nothing is downloaded.
"""

from __future__ import annotations

import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ul2
import ul2.ray
from ul2.sources import ByteTokenizer, stdlib_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output directory for the Parquet files")
    parser.add_argument("--rows", type=int, default=2000, help="at most this many token rows")
    parser.add_argument("--inputs-length", type=int, default=128)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    tok = ByteTokenizer()
    sentinels = tok.sentinels(on_overflow="cap")
    mixture = ul2.presets.ul2(prompts=tok.encode)
    collator = ul2.Collator(
        mixture, sentinels=sentinels, inputs_length=args.inputs_length, targets_length=args.inputs_length
    )
    width = min(
        r.raw_length
        for r in ul2.plan(
            mixture, sentinels=sentinels, inputs_length=args.inputs_length, targets_length=args.inputs_length
        )
    )
    tokens = stdlib_stream(tok, max_bytes=4 * args.rows * width)
    n = min(args.rows, len(tokens) // width)
    table = pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "tokens": pa.FixedSizeListArray.from_arrays(pa.array(tokens[: n * width]), width).cast(
                pa.list_(pa.int32())
            ),
        }
    )

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        rows = ray.data.from_arrow(table).repartition(args.num_cpus * 2)
        ul2.ray.denoise(rows, collator, batch_size=args.batch_size).write_parquet(args.out)
    finally:
        ray.shutdown()

    out = pq.read_table(args.out)
    print(f"{n} rows of {width} tokens -> {out.num_rows} examples in {args.out}")
    print({name: str(out.schema.field(name).type) for name in out.column_names})


if __name__ == "__main__":
    main()
