"""UL2 training batches from a token stream, for an encoder-decoder and a decoder-only model.

Run: python examples/ul2_pretraining_data.py [--tokens PATH.npy]

Without --tokens it uses the built-in corpus (the standard library's sources, byte-level ids).
With a .npy file of token ids it memory-maps it: the corpus is never loaded or copied.
"""

from __future__ import annotations

import argparse

import numpy as np
import ul2
from ul2.sources import ByteTokenizer, stdlib_stream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", help="a .npy file of token ids (memory-mapped)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    tok = ByteTokenizer()
    tokens = np.load(args.tokens, mmap_mode="r") if args.tokens else stdlib_stream(tok, max_bytes=4 << 20)
    sentinels = tok.sentinels(on_overflow="cap")
    mixture = ul2.presets.ul2(prompts=tok.encode)

    # Encoder-decoder (T5 / UL2 style): Hugging Face names, labels padded with -100.
    enc_dec = ul2.DenoisingDataset(
        tokens, mixture, sentinels=sentinels, inputs_length=512, targets_length=512
    )
    print(enc_dec)
    print(enc_dec.plan())
    batch = enc_dec.batch(np.arange(args.batch_size))
    print({name: a.shape for name, a in batch.items()})
    print("denoisers of the batch:", batch["denoiser"].tolist())

    # Decoder-only prefix LM (UL2R), rows packed to 2048 with segment ids for varlen attention.
    dec = ul2.DenoisingDataset(
        tokens, ul2.presets.ul2r(prompts=tok.encode), sentinels=sentinels, sequence_length=2048, pack=True
    )
    batch = dec.batch(np.arange(min(args.batch_size, len(dec))))
    print(dec)
    print({name: a.shape for name, a in batch.items()}, f"fill rate {dec.fill_rate:.3f}")


if __name__ == "__main__":
    main()
