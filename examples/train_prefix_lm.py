"""Train a tiny decoder-only model (Llama architecture, random weights) as a UL2 prefix LM.

Run: python examples/train_prefix_lm.py [--steps 50] [--batch-size 16] [--causal]

ul2.DenoisingDataset in the decoder-only format gives rows of [inputs + EOS] + [targets + EOS]
with labels on the targets only (-100 elsewhere; the model shifts them itself) and
prefix_lengths, the length of each row's inputs. ul2.torch.attention_mask_4d turns that into
the model's 4-D attention mask: the prefix attends both ways, the targets causally — the
prefix-LM of UL2. --causal trains with plain causal attention instead. The loss is
ul2.torch.loss_by_denoiser's with shift=True (the logits at t predict the label at t + 1, as
the model's own loss shifts them), one cross-entropy split by each row's denoiser (each token's,
packed). Data: the built-in corpus as byte-level ids; nothing is downloaded. Prints the loss of
every step, each denoiser's loss every --log-every steps, a table of each denoiser's loss over
the first and last steps, and the mean loss of the first and last five steps.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import ul2
import ul2.torch
from transformers import LlamaConfig, LlamaForCausalLM
from ul2.sources import ByteTokenizer, stdlib_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--pack", action="store_true", help="pack several examples into each row")
    parser.add_argument("--causal", action="store_true", help="causal attention over the prefix too")
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
    mixture = ul2.presets.ul2r(prompts=tok.encode)
    data = ul2.DenoisingDataset(
        tokens,
        mixture,
        sentinels=tok.sentinels(on_overflow="cap"),
        sequence_length=args.sequence_length,
        pack=args.pack,
        seed=args.seed,
        dtype=np.int64,
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
    config = LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=args.sequence_length,
        pad_token_id=tok.pad_id,
        bos_token_id=tok.eos_id,
        eos_token_id=tok.eos_id,
    )
    model = LlamaForCausalLM(config).to(args.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    model.train()

    for i, d in enumerate(mixture.denoisers):
        print(f"denoiser {i}: {d.label}")
    losses: list[float] = []
    sums, counts = np.zeros((args.steps, len(mixture))), np.zeros((args.steps, len(mixture)))
    while len(losses) < args.steps:
        for batch in loader:
            batch = {name: t.to(args.device, non_blocking=True) for name, t in batch.items()}
            # [B, 1, S, S]: causal, plus both ways inside each example's prefix (and, packed,
            # never across examples); position ids restart at each packed example.
            mask = ul2.torch.attention_mask_4d(batch, bidirectional=not args.causal)
            position_ids = batch["positions"] if args.pack else None
            # No labels for the model, so the loss is computed once, here, split by denoiser.
            logits = model(
                input_ids=batch["input_ids"], attention_mask=mask, position_ids=position_ids
            ).logits
            per = ul2.torch.loss_by_denoiser(
                logits, batch["labels"], batch["denoiser"], len(mixture), shift=True
            )
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
