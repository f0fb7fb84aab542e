"""Train a tiny decoder-only transformer as a UL2 prefix LM with fill-in-the-middle on packed
rows (UL2R and FillInTheMiddle in one mixture), its attention FlexAttention over the BlockMask
of ul2.torch.block_mask.

Run: python examples/train_flex_attention.py [--steps 40] [--device cuda]

ul2.DenoisingDataset packs several prefix-LM examples into each row (pack=True; each line of the
corpus is a document, kept whole, so the examples are short): segment_ids tell them apart,
bidirectional_mask marks each example's prefix, positions restart in each.
ul2.torch.block_mask turns those [B, S] fields into a FlexAttention BlockMask (examples apart,
the prefix attended both ways, the targets causally, padding masked) without an S x S mask, and
the model hands it to torch.nn.attention.flex_attention. The model is written out (embeddings,
pre-norm blocks, a head) so that where the mask goes can be seen.

PyTorch 2.15 runs FlexAttention on the CPU for inference only: it refuses gradients there. So on
a GPU the model trains through FlexAttention (compiled); on the CPU it trains through the dense
mask of ul2.torch.attention_mask_4d (the same attention) and every --eval-every steps evaluates
a fixed batch through both, printing the two losses, which agree. Data: the built-in corpus as
byte-level ids; nothing is downloaded. Prints the loss of every step, the evaluations (with the
FlexAttention loss of each denoiser, from ul2.torch.loss_by_denoiser), and at the end the mean
loss of the first and last five steps.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
import ul2
import ul2.loss
import ul2.torch
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention
from ul2.sources import ByteTokenizer, stdlib_stream

Flex = Callable[..., torch.Tensor]


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.out = nn.Linear(width, width, bias=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, mask: BlockMask | torch.Tensor, flex: Flex) -> torch.Tensor:
        b, s, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, s, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        if isinstance(mask, BlockMask):
            attended = flex(q, k, v, block_mask=mask)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(attended.transpose(1, 2).reshape(b, s, width))
        return x + self.mlp(self.norm2(x))


class PrefixLM(nn.Module):
    def __init__(self, vocab: int, length: int, width: int, heads: int, layers: int) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(vocab, width), nn.Embedding(length, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)

    def forward(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: BlockMask | torch.Tensor, flex: Flex
    ) -> torch.Tensor:
        x = self.embed(ids) + self.position(positions)
        for block in self.blocks:
            x = block(x, mask, flex)
        return self.head(self.norm(x))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=128, help="the BlockMask's block size")
    parser.add_argument("--eval-every", type=int, default=10, help="steps between evaluations")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--max-bytes", type=int, default=1 << 20, help="how much of the corpus to read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cuda trains through FlexAttention")
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (1 suits a tiny model)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    if on_cpu:
        # Uncompiled FlexAttention (the CPU's, here) warns that it is the unfused reference
        # implementation: slower, the same result.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        flex: Flex = flex_attention
    else:
        flex = torch.compile(flex_attention)

    # Three ids above the bytes and below the sentinels for fill-in-the-middle's markers.
    tok = ByteTokenizer(vocab_size=387, sentinel_count=125)
    tokens = stdlib_stream(tok, max_bytes=args.max_bytes)
    # Each line a document, kept whole: short examples, several packed into a row.
    line_ends = np.flatnonzero(tokens == tok.encode("\n")[0]) + 1
    # UL2R with fill-in-the-middle on a fifth of the examples (PSM and SPM, loss on the middle).
    ul2r = ul2.presets.ul2r(prompts=tok.encode)
    fim = ul2.FillInTheMiddle(259, 260, 261, spm_rate=0.5, loss="middle")
    mixture = ul2.Mixture([*zip(ul2r.denoisers, (0.8 * r for r in ul2r.rates), strict=True), (fim, 0.2)])
    data = ul2.DenoisingDataset(
        tokens,
        mixture,
        sentinels=tok.sentinels(on_overflow="cap"),
        sequence_length=args.sequence_length,
        pack=True,
        doc_offsets=np.concatenate([[0], line_ends[:-1]]),
        documents="respect",
        seed=args.seed,
        dtype=np.int64,
    )
    print(data)
    # Four batches' rows, so that every denoiser has examples in it.
    fixed = ul2.torch.collate_fn(data.batch(range(4 * args.batch_size)))
    print("examples per row of the fixed batch:", fixed["segment_ids"].amax(dim=1).tolist())
    loader = ul2.torch.data_loader(
        data,
        args.batch_size,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(args.seed),
    )
    fixed = {name: t.to(device) for name, t in fixed.items()}
    fixed_masks = {
        "flex": ul2.torch.block_mask(fixed, block_size=args.block_size),
        "dense": ul2.torch.attention_mask_4d(fixed),
    }

    torch.manual_seed(args.seed)
    model = PrefixLM(tok.vocab_size, args.sequence_length, width=64, heads=4, layers=2).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    print("training through", "the dense mask (CPU)" if on_cpu else "FlexAttention")
    for i, d in enumerate(mixture.denoisers):
        print(f"denoiser {i}: {d.label}")

    def loss(batch: dict[str, torch.Tensor], mask: BlockMask | torch.Tensor) -> ul2.loss.DenoiserLoss:
        # Labels sit under their own tokens (-100 outside the targets, and so on each example's
        # first token): shift=True scores the logits at t against the label at t + 1.
        logits = model(batch["input_ids"], batch["positions"], mask, flex)
        labels, denoiser = batch["labels"], batch["denoiser"]
        return ul2.torch.loss_by_denoiser(logits, labels, denoiser, len(mixture), shift=True)

    def evaluate(step: int) -> None:
        model.eval()
        with torch.no_grad():
            per = {name: loss(fixed, mask) for name, mask in fixed_masks.items()}
        model.train()
        print(
            f"eval step {step:3d}  flex loss {per['flex'].loss:.5f}  dense loss {per['dense'].loss:.5f}  "
            "per denoiser " + "  ".join(f"{i}:{m:.3f}" for i, m in enumerate(per["flex"].mean.tolist()))
        )

    losses: list[float] = []
    evaluate(0)
    while len(losses) < args.steps:
        for batch in loader:
            batch = {name: t.to(device, non_blocking=True) for name, t in batch.items()}
            if on_cpu:
                mask: BlockMask | torch.Tensor = ul2.torch.attention_mask_4d(batch)
            else:
                mask = ul2.torch.block_mask(batch, block_size=args.block_size)
            step_loss = loss(batch, mask).loss
            step_loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(step_loss.item())
            print(f"step {len(losses):3d}  loss {losses[-1]:.4f}", flush=True)
            if len(losses) % args.eval_every == 0:
                evaluate(len(losses))
            if len(losses) == args.steps:
                break
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    print(f"loss first5 {first:.4f} last5 {last:.4f}")


if __name__ == "__main__":
    main()
