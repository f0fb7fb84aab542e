"""A Grain input pipeline of UL2 batches in seqio/t5x feature names, sharded by host.

Run: python examples/grain_pipeline.py [--hosts 2] [--batch-size 8] [--workers 0]

Every host runs the same pipeline with its own ShardOptions(index, count) (on a real JAX
cluster: grain.sharding.ShardByJaxProcess()) and gets a disjoint share of the examples, the
same examples for any worker count (grain's workers each batch their own share). Grain
batches the example indices and ul2.grain.Denoise turns each index batch into NumPy arrays with
one Rust call. With JAX
installed, the first batch also becomes global jax.Arrays split over the devices
(ul2.jax.global_batch). Data: the built-in corpus as byte-level ids; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import importlib.util

import grain
import ul2
import ul2.grain
import ul2.jax  # imports JAX only when called
from ul2.sources import ByteTokenizer, stdlib_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2, help="hosts to simulate (one ShardOptions each)")
    parser.add_argument("--batch-size", type=int, default=8, help="per host")
    parser.add_argument("--inputs-length", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--max-bytes", type=int, default=1 << 18)
    args = parser.parse_args()

    tok = ByteTokenizer()
    ds = ul2.DenoisingDataset(
        stdlib_stream(tok, max_bytes=args.max_bytes),
        ul2.presets.ul2(prompts=tok.encode),
        sentinels=tok.sentinels(on_overflow="cap"),
        inputs_length=args.inputs_length,
        targets_length=args.inputs_length,
        format="seqio",  # encoder_input_tokens, decoder_target_tokens, ... (t5x's names)
    )
    print(ds)
    total = 0
    for host in range(args.hosts):
        loader = ul2.grain.data_loader(
            ds,
            args.batch_size,
            shard_options=grain.sharding.ShardOptions(shard_index=host, shard_count=args.hosts),
            shuffle=True,
            seed=0,
            num_epochs=1,
            worker_count=args.workers,
        )
        batches = 0
        for batch in loader:
            if batches == 0:
                print(f"host {host} batch 0:", {name: (a.shape, str(a.dtype)) for name, a in batch.items()})
            batches += 1
        del batch  # grain hands batches over in shared memory, freed once dropped
        total += batches * args.batch_size
        print(f"host {host}: {batches} batches of {args.batch_size}")
    print(f"{total} of {len(ds)} examples in one epoch over {args.hosts} hosts (incomplete batches dropped)")

    if importlib.util.find_spec("jax") is not None:
        import jax

        mesh = jax.sharding.Mesh(jax.devices(), ("data",))
        rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
        arrays = ul2.jax.global_batch(next(iter(ul2.grain.data_loader(ds, args.batch_size))), rows)
        print(
            f"on {mesh.size} {jax.devices()[0].platform} device(s):", {n: a.shape for n, a in arrays.items()}
        )


if __name__ == "__main__":
    main()
