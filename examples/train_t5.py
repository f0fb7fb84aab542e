"""Train a tiny T5 (random weights, built from a config) on the UL2 mixture of denoisers.

Run: python examples/train_t5.py [--steps 50] [--batch-size 16] [--workers 2]

Data: the built-in corpus (the Python standard library's sources) as byte-level ids (ByT5's
convention: 384 ids, the top 125 are sentinels). ul2.DenoisingDataset turns the token stream
into UL2 examples (R, X and S denoisers with their mode prompts); ul2.torch feeds them to a
PyTorch DataLoader, one Rust call per batch, tensors handed over without a copy. The loss is
ul2.torch.loss_by_denoiser's, one cross-entropy over the logits split by each row's denoiser.
Nothing is downloaded. Prints the loss of every step, each denoiser's loss every --log-every
steps, a table of each denoiser's loss over the first and last steps, and the mean loss of the
first and last five steps.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import ul2
import ul2.torch
from transformers import T5Config, T5ForConditionalGeneration
from ul2.sources import ByteTokenizer, stdlib_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--inputs-length", type=int, default=128)
    parser.add_argument("--targets-length", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-bytes", type=int, default=1 << 20, help="how much of the corpus to read")
    parser.add_argument("--log-every", type=int, default=10, help="steps between per-denoiser losses")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="cpu", help="e.g. cuda: batches are pinned and copied asynchronously"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (1 suits a tiny model)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    tok = ByteTokenizer()
    tokens = stdlib_stream(tok, max_bytes=args.max_bytes)
    mixture = ul2.presets.ul2(prompts=tok.encode)
    data = ul2.DenoisingDataset(
        tokens,
        mixture,
        sentinels=tok.sentinels(on_overflow="cap"),
        inputs_length=args.inputs_length,
        targets_length=args.targets_length,
        seed=args.seed,
        dtype=np.int64,  # LongTensor ids and labels, as the model wants: no conversion
    )
    print(data)
    loader = ul2.torch.data_loader(
        data,
        args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=args.device.startswith("cuda"),
        generator=torch.Generator().manual_seed(args.seed),
    )

    torch.manual_seed(args.seed)
    config = T5Config(
        vocab_size=tok.vocab_size,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        dropout_rate=0.0,
        pad_token_id=tok.pad_id,
        eos_token_id=tok.eos_id,
        decoder_start_token_id=tok.pad_id,
    )
    model = T5ForConditionalGeneration(config).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()

    for i, d in enumerate(mixture.denoisers):
        print(f"denoiser {i}: {d.label}")
    losses: list[float] = []
    sums, counts = np.zeros((args.steps, len(mixture))), np.zeros((args.steps, len(mixture)))
    while len(losses) < args.steps:
        for batch in loader:
            batch = {name: t.to(args.device, non_blocking=True) for name, t in batch.items()}
            # The model gets no labels, so the loss is computed once, here: each row's tokens
            # go to its denoiser (the index into the mixture), and their mean is the model's loss.
            labels, denoiser = batch.pop("labels"), batch.pop("denoiser")
            per = ul2.torch.loss_by_denoiser(model(**batch).logits, labels, denoiser, len(mixture))
            per.loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            step = len(losses)
            losses.append(per.loss.item())
            sums[step], counts[step] = per.sum.detach().cpu(), per.tokens.cpu()
            print(f"step {step + 1:3d}  loss {losses[-1]:.4f}", flush=True)
            if (step + 1) % args.log_every == 0:
                window = slice(step + 1 - args.log_every, step + 1)
                mean = sums[window].sum(0) / np.maximum(counts[window].sum(0), 1)
                print("  per denoiser " + "  ".join(f"{i}:{m:.3f}" for i, m in enumerate(mean)))
            if len(losses) == args.steps:
                break
    n = max(1, min(10, args.steps // 2))
    print(f"\n{'denoiser':44s} {'first ' + str(n):>9s} {'last ' + str(n):>9s}")
    for i, d in enumerate(mixture.denoisers):
        first = sums[:n, i].sum() / max(counts[:n, i].sum(), 1)
        last = sums[-n:, i].sum() / max(counts[-n:, i].sum(), 1)
        print(f"{d.label:44s} {first:9.3f} {last:9.3f}")
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"loss first5 {first:.4f} last5 {last:.4f}")


if __name__ == "__main__":
    main()
