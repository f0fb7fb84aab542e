"""A UL2 training loop on a GPU fed by ul2, and how much of each step the data takes.

Run: python examples/gpu_train_step.py [--steps 60] [--batch 64] [--tiny]

It needs a CUDA GPU; without one, --tiny runs a small CPU version (a smoke run: the timings
are the CPU's, not a GPU step's).

Model: a T5 encoder-decoder (t5-small's shape, random weights, bf16 autocast) or, with
--decoder, a GPT-2-shaped decoder-only model trained on ul2's packed prefix-LM rows.
Data: the built-in corpus (the standard library's sources, ByT5 byte ids), the ``ul2()``
mixture at 512/512 (encoder-decoder) or 1024 packed (decoder-only). The loop times, per
step, the ul2 batch on the host and the GPU step, then reports the share of the step that
data preparation would take if not overlapped, and the step time when a background thread
prepares the next batch (how a DataLoader would use it).
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time

import numpy as np
import torch
import ul2
from ul2.sources import ByteTokenizer, stdlib_stream


def model_and_dataset(
    decoder: bool, tiny: bool, device: torch.device
) -> tuple[torch.nn.Module, ul2.DenoisingDataset]:
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    tok = ByteTokenizer()
    tokens = stdlib_stream(tok, max_bytes=(2 << 20) if tiny else (24 << 20))
    sentinels = tok.sentinels(on_overflow="cap")
    size = (
        dict(d_model=64, d_ff=128, num_layers=2, num_heads=4)
        if tiny
        else dict(d_model=512, d_ff=2048, num_layers=6, num_heads=8)
    )
    if decoder:
        ds = ul2.DenoisingDataset(
            tokens,
            ul2.presets.ul2r(prompts=tok.encode),
            sentinels=sentinels,
            sequence_length=1024,
            pack=True,
            dtype=np.int64,
        )
        config = GPT2Config(
            vocab_size=tok.vocab_size,
            n_positions=1024,
            n_embd=size["d_model"],
            n_layer=size["num_layers"],
            n_head=size["num_heads"],
            bos_token_id=None,
            eos_token_id=tok.eos_id,
        )
        model = GPT2LMHeadModel(config)
    else:
        ds = ul2.DenoisingDataset(
            tokens,
            ul2.presets.ul2(prompts=tok.encode),
            sentinels=sentinels,
            inputs_length=512,
            targets_length=512,
            dtype=np.int64,
        )
        config = T5Config(vocab_size=tok.vocab_size, decoder_start_token_id=0, **size)
        model = T5ForConditionalGeneration(config)
    return model.to(device), ds


def to_model(batch: dict[str, np.ndarray], decoder: bool, device: torch.device) -> dict[str, torch.Tensor]:
    names = (
        ("input_ids", "attention_mask", "labels")
        if decoder
        else ("input_ids", "attention_mask", "labels", "decoder_input_ids", "decoder_attention_mask")
    )
    if device.type != "cuda":
        return {n: torch.from_numpy(batch[n]) for n in names}
    # from_numpy shares ul2's buffers; pinned copies go to the GPU without blocking the host.
    return {n: torch.from_numpy(batch[n]).pin_memory().to(device, non_blocking=True) for n in names}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--decoder", action="store_true")
    p.add_argument("--tiny", action="store_true", help="a tiny model (CPU smoke run)")
    args = p.parse_args()
    if not torch.cuda.is_available() and not args.tiny:
        sys.exit(
            "gpu_train_step.py: needs a CUDA GPU (torch.cuda.is_available() is False); "
            "--tiny runs a small CPU version"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model, ds = model_and_dataset(args.decoder, args.tiny, device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    n = len(ds)
    print(
        f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, ul2 {ul2.__version__} "
        f"on {ul2.get_num_threads()} threads, {n} items, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params"
    )

    def keys(step: int) -> np.ndarray:
        return (np.arange(args.batch) + step * args.batch) % n

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(inputs: dict[str, torch.Tensor]) -> float:
        # bf16 on a CPU without bf16 units is emulated, many times slower than float32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**inputs).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    # 1. Serial: time the data and the step apart.
    data_s, step_s, losses = [], [], []
    for step in range(args.steps):
        t0 = time.perf_counter()
        batch = ds.batch(keys(step))
        t1 = time.perf_counter()
        losses.append(train_step(to_model(batch, args.decoder, device)))
        sync()
        t2 = time.perf_counter()
        data_s.append(t1 - t0)
        step_s.append(t2 - t1)
    warm = slice(5, None)
    data_ms, gpu_ms = 1e3 * np.median(data_s[warm]), 1e3 * np.median(step_s[warm])
    raw = sum(ds.span(k)[1] - ds.span(k)[0] for r in keys(0) for k in ds.samples(int(r)))
    print(
        f"serial: ul2 batch {data_ms:.2f} ms ({raw / data_ms / 1e3:.0f} M raw tokens/s), "
        f"train step {gpu_ms:.1f} ms, data = {100 * data_ms / (data_ms + gpu_ms):.1f}% of the step"
    )
    print(f"loss: first 5 steps {np.mean(losses[:5]):.3f}, last 5 {np.mean(losses[-5:]):.3f}")

    # 2. Overlapped: a thread prepares the next batch while the GPU trains.
    q: queue.Queue[dict[str, np.ndarray] | None] = queue.Queue(maxsize=2)

    def producer() -> None:
        for step in range(args.steps, 2 * args.steps):
            q.put(ds.batch(keys(step)))
        q.put(None)

    threading.Thread(target=producer, daemon=True).start()
    times = []
    while (batch := q.get()) is not None:
        t0 = time.perf_counter()
        train_step(to_model(batch, args.decoder, device))
        sync()
        times.append(time.perf_counter() - t0)
    overlapped_ms = 1e3 * np.median(times[5:])
    print(
        f"overlapped: train step {overlapped_ms:.1f} ms with ul2 feeding it "
        f"({100 * (overlapped_ms / gpu_ms - 1):+.1f}% vs the step alone)"
    )


if __name__ == "__main__":
    main()
