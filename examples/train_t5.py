"""Train a tiny T5 (random weights, built from a config) on the UL2 mixture of denoisers.

Run: python examples/train_t5.py [--steps 50] [--batch-size 16] [--workers 2]

Data: the built-in corpus (the Python standard library's sources) as byte-level ids (ByT5's
convention: 384 ids, the top 125 are sentinels). ul2.DenoisingDataset turns the token stream
into UL2 examples (R, X and S denoisers with their mode prompts); ul2.torch feeds them to a
PyTorch DataLoader, one Rust call per batch, tensors handed over without a copy. Nothing is
downloaded. Prints the loss of every step and, at the end, the mean of the first and last five.
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
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device", default="cpu", help="e.g. cuda: batches are pinned and copied asynchronously"
    )
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (1 suits a tiny model)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    tok = ByteTokenizer()
    tokens = stdlib_stream(tok, max_bytes=args.max_bytes)
    data = ul2.DenoisingDataset(
        tokens,
        ul2.presets.ul2(prompts=tok.encode),
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

    losses: list[float] = []
    while len(losses) < args.steps:
        for batch in loader:
            batch.pop("denoiser")  # the index into the mixture: for per-denoiser metrics, not the model
            batch = {name: t.to(args.device, non_blocking=True) for name, t in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            print(f"step {len(losses):3d}  loss {losses[-1]:.4f}", flush=True)
            if len(losses) == args.steps:
                break
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"loss first5 {first:.4f} last5 {last:.4f}")


if __name__ == "__main__":
    main()
