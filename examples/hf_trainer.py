"""ul2.hf.DataCollator as the data_collator of a Hugging Face Trainer.

Run: python examples/hf_trainer.py [--model t5|llama] [--steps 30] [--workers 0]

A tokenised datasets.Dataset (an "input_ids" column, one training row per example: here the
built-in corpus as byte-level ids cut into rows that fit every denoiser of the mixture) is
denoised batch by batch by the collator, inside the Trainer's own DataLoader. --model t5 trains
a tiny T5ForConditionalGeneration on encoder-decoder batches; --model llama a tiny
LlamaForCausalLM on decoder-only prefix-LM rows whose 4-D attention mask makes the prefix
bidirectional. Random weights from a config; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import tempfile

import datasets
import numpy as np
import torch
import ul2
import ul2.hf
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    T5Config,
    T5ForConditionalGeneration,
    Trainer,
    TrainingArguments,
)
from ul2.sources import ByteTokenizer, stdlib_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("t5", "llama"), default="t5")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--length", type=int, default=128, help="inputs_length (t5) or sequence_length (llama)"
    )
    parser.add_argument("--workers", type=int, default=0, help="the Trainer's dataloader_num_workers")
    parser.add_argument("--max-bytes", type=int, default=1 << 19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1, help="PyTorch threads (1 suits a tiny model)")
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    tok = ByteTokenizer()
    sentinels = tok.sentinels(on_overflow="cap")
    mixture = ul2.presets.ul2(prompts=tok.encode)
    budget = {"inputs_length": args.length} if args.model == "t5" else {"sequence_length": args.length}
    collator = ul2.hf.DataCollator(mixture, sentinels=sentinels, seed=args.seed, **budget)

    # Rows no longer than the shortest planned raw length fit whichever denoiser is drawn.
    row = min(r.raw_length for r in ul2.plan(mixture, sentinels=sentinels, **budget))
    tokens = stdlib_stream(tok, max_bytes=args.max_bytes)
    n = len(tokens) // row
    train = datasets.Dataset.from_dict({"input_ids": tokens[: n * row].reshape(n, row)})
    print(f"{len(train)} rows of {row} tokens; {collator!r}")

    if args.model == "t5":
        model = T5ForConditionalGeneration(
            T5Config(
                vocab_size=tok.vocab_size,
                d_model=64,
                d_kv=16,
                d_ff=128,
                num_layers=2,
                num_heads=4,
                dropout_rate=0.0,
                pad_token_id=tok.pad_id,
                eos_token_id=tok.eos_id,
                decoder_start_token_id=tok.pad_id,
            )
        )
    else:
        model = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=tok.vocab_size,
                hidden_size=64,
                intermediate_size=128,
                num_hidden_layers=2,
                num_attention_heads=4,
                num_key_value_heads=4,
                max_position_embeddings=args.length,
                pad_token_id=tok.pad_id,
                bos_token_id=tok.eos_id,
                eos_token_id=tok.eos_id,
            )
        )

    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=out,
                max_steps=args.steps,
                per_device_train_batch_size=args.batch_size,
                learning_rate=3e-3,
                logging_steps=1,
                save_strategy="no",
                report_to="none",
                use_cpu=True,
                dataloader_num_workers=args.workers,
                disable_tqdm=True,
                seed=args.seed,
            ),
            train_dataset=train,
            data_collator=collator,
        )
        trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"{len(losses)} steps; loss first5 {np.mean(losses[:5]):.4f} last5 {np.mean(losses[-5:]):.4f}")


if __name__ == "__main__":
    main()
