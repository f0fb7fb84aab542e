"""Train a tiny decoder-only prefix LM in JAX on the UL2 mixture, data-parallel over a device mesh.

Run: XLA_FLAGS=--xla_force_host_platform_device_count=2 python examples/train_jax.py [--steps 50]

The documents (paragraphs of the built-in corpus as byte-level ids; nothing is downloaded) go
through a grain pipeline: this host's share of them, shuffled and repeated, then
ul2.grain.DenoiseIterDataset denoises them with the ul2() mixture into packed decoder-only rows
(several examples a row, documents_mode="respect"): input_ids, labels, segment_ids, positions
and bidirectional_mask, the prefix that attends both ways. ul2.jax.global_batch makes global
jax.Arrays of the host's rows, split over the mesh's "data" axis (the XLA flag above gives the
CPU two devices; on GPUs or TPUs the mesh is theirs), and ul2.jax.attention_mask_4d builds the
segment-and-prefix attention mask inside the jitted step, and ul2.jax.loss_by_denoiser the loss
split by each token's denoiser. The model is a small transformer in plain JAX, trained with
optax's AdamW; parameters are replicated, the batch sharded, and XLA inserts the gradient and
per-denoiser all-reduces.

Prints each step's loss and a digest of the global batch as the devices hold it (the same for any
device count), the loss per denoiser every --log-every steps, a table of each denoiser's loss over
the first and last steps, and the mean loss of the first and last five steps.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from typing import Any

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import ul2
import ul2.grain
import ul2.jax
import ul2.loss
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from ul2.sources import ByteTokenizer, stdlib_documents

# What the model reads of each packed row (cu_seqlens, for varlen kernels, is left out).
FIELDS = (
    "input_ids",
    "labels",
    "attention_mask",
    "segment_ids",
    "positions",
    "bidirectional_mask",
    "denoiser",
)

Params = dict[str, Any]


def init_params(key: jax.Array, vocab: int, length: int, d: int, layers: int) -> Params:
    def dense(k: jax.Array, fan_in: int, fan_out: int) -> jax.Array:
        return jax.random.normal(k, (fan_in, fan_out)) / math.sqrt(fan_in)

    keys = iter(jax.random.split(key, 2 + 4 * layers))
    return {
        "embed": jax.random.normal(next(keys), (vocab, d)) * 0.02,
        "position": jax.random.normal(next(keys), (length, d)) * 0.02,
        "layers": [
            {
                "norm1": jnp.ones(d),
                "qkv": dense(next(keys), d, 3 * d),
                "out": dense(next(keys), d, d) / math.sqrt(2 * layers),
                "norm2": jnp.ones(d),
                "up": dense(next(keys), d, 4 * d),
                "down": dense(next(keys), 4 * d, d) / math.sqrt(2 * layers),
            }
            for _ in range(layers)
        ],
        "norm": jnp.ones(d),
    }


def rms_norm(x: jax.Array, scale: jax.Array) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * scale


def forward(params: Params, batch: dict[str, jax.Array], heads: int) -> jax.Array:
    """Logits ``[B, S, vocab]``; positions restart at each packed example."""
    x = params["embed"][batch["input_ids"]] + params["position"][batch["positions"]]
    b, s, d = x.shape
    mask = ul2.jax.attention_mask_4d(batch)  # [B, 1, S, S]: own example, causal or both in its prefix
    for layer in params["layers"]:
        q, k, v = jnp.split(rms_norm(x, layer["norm1"]) @ layer["qkv"], 3, axis=-1)
        q, k, v = (t.reshape(b, s, heads, d // heads) for t in (q, k, v))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(d // heads)
        # A finite floor: a padding query attends nothing, and its softmax must not be NaN.
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        attended = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(scores, axis=-1), v)
        x = x + attended.reshape(b, s, d) @ layer["out"]
        x = x + jax.nn.gelu(rms_norm(x, layer["norm2"]) @ layer["up"]) @ layer["down"]
    return rms_norm(x, params["norm"]) @ params["embed"].T


def loss_terms(
    params: Params, batch: dict[str, jax.Array], heads: int, denoisers: int
) -> tuple[jax.Array, ul2.loss.DenoiserLoss]:
    """Mean next-token loss over the target tokens, and each denoiser's loss sum and token count."""
    # The decoder format's labels sit under their own tokens (as Hugging Face models read them),
    # so position t predicts the label at t + 1: shift=True.
    logits = forward(params, batch, heads)
    per = ul2.jax.loss_by_denoiser(logits, batch["labels"], batch["denoiser"], denoisers, shift=True)
    return per.loss, per


def digest(batch: dict[str, jax.Array]) -> str:
    """SHA-256 (12 hex digits) of the global batch as the devices hold it."""
    h = hashlib.sha256()
    for name in sorted(batch):
        h.update(name.encode() + np.asarray(jax.device_get(batch[name])).tobytes())
    return h.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16, help="global rows a step (all hosts)")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-bytes", type=int, default=1 << 19, help="how much of the corpus to read")
    parser.add_argument("--log-every", type=int, default=10, help="steps between per-denoiser losses")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tok = ByteTokenizer()
    mixture = ul2.presets.ul2(prompts=tok.encode)
    paragraphs = [p for doc in stdlib_documents(args.max_bytes) for p in doc.split(b"\n\n") if p.strip()]
    hosts, host = jax.process_count(), jax.process_index()
    # Each host reads every hosts-th paragraph and runs its own stream over them.
    documents = (
        grain.MapDataset.source(tok.encode_batch(paragraphs))[host::hosts]
        .shuffle(seed=args.seed)
        .repeat()
        .to_iter_dataset(grain.ReadOptions(num_threads=0))  # in memory: no reader threads
    )
    rows = ul2.grain.DenoiseIterDataset(
        documents,
        mixture,
        sentinels=tok.sentinels(on_overflow="cap"),
        sequence_length=args.sequence_length,
        pack=True,
        documents_mode="respect",
        batch_size=args.batch_size // hosts,
        seed=args.seed,
    )

    mesh = Mesh(np.array(jax.devices()), ("data",))
    split_rows = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())
    params = jax.device_put(
        init_params(
            jax.random.key(args.seed), tok.vocab_size, args.sequence_length, args.d_model, args.layers
        ),
        replicated,
    )
    optimizer = optax.adamw(args.lr, weight_decay=0.01)
    opt_state = jax.device_put(optimizer.init(params), replicated)

    @jax.jit
    def train_step(params: Params, opt_state: Any, batch: dict[str, jax.Array]) -> tuple[Any, ...]:
        (loss, per_denoiser), grads = jax.value_and_grad(loss_terms, has_aux=True)(
            params, batch, args.heads, len(mixture)
        )
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, per_denoiser

    platform = jax.devices()[0].platform
    print(f"{len(paragraphs)} paragraphs, {hosts} host(s); mesh {dict(mesh.shape)} of {platform}")
    for i, d in enumerate(mixture.denoisers):
        print(f"denoiser {i}: {d.label}")
    losses: list[float] = []
    sums, counts = np.zeros((args.steps, len(mixture))), np.zeros((args.steps, len(mixture)))
    iterator = iter(rows)
    for step in range(args.steps):
        batch = ul2.jax.global_batch({n: a for n, a in next(iterator).items() if n in FIELDS}, split_rows)
        if step == 0:
            a = batch["input_ids"]
            print(f"global batch {a.shape}, {[s.data.shape for s in a.addressable_shards]} per device")
        params, opt_state, loss, (sums[step], counts[step]) = train_step(params, opt_state, batch)
        losses.append(float(loss))
        print(f"step {step + 1:3d}  loss {losses[-1]:.4f}  batch {digest(batch)}", flush=True)
        if (step + 1) % args.log_every == 0:
            window = slice(step + 1 - args.log_every, step + 1)
            mean = sums[window].sum(0) / np.maximum(counts[window].sum(0), 1)
            print("  per denoiser " + "  ".join(f"{i}:{m:.3f}" for i, m in enumerate(mean)))
    # A checkpoint stores this beside the parameters: set_state on a new pipeline's iterator
    # continues with the batches that come next.
    state = iterator.get_state()
    print(f"data state: {len(json.dumps(state))} bytes of JSON, the documents' {state['parent']}")

    n = max(1, min(10, args.steps // 2))
    print(f"\n{'denoiser':44s} {'first ' + str(n):>9s} {'last ' + str(n):>9s}")
    for i, d in enumerate(mixture.denoisers):
        first = sums[:n, i].sum() / max(counts[:n, i].sum(), 1)
        last = sums[-n:, i].sum() / max(counts[-n:, i].sum(), 1)
        print(f"{d.label:44s} {first:9.3f} {last:9.3f}")
    k = min(5, len(losses))
    print(f"loss first5 {np.mean(losses[:k]):.4f} last5 {np.mean(losses[-k:]):.4f}")


if __name__ == "__main__":
    main()
