"""Token sources: the built-in corpus (the Python standard library's own source files, present
on every machine) and a byte-level tokenizer with the ByT5 convention."""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._ul2 import Sentinels


class ByteTokenizer:
    """ByT5's byte-level vocabulary: pad 0, eos 1, unk 2, byte ``b`` -> ``b + 3``, and
    ``sentinel_count`` sentinels at the top of a ``vocab_size``-id vocabulary
    (``<extra_id_0>`` = ``vocab_size - 1``)."""

    pad_id, eos_id, unk_id, offset = 0, 1, 2, 3

    def __init__(self, vocab_size: int = 384, sentinel_count: int = 125) -> None:
        if vocab_size - sentinel_count < 256 + self.offset:
            raise ValueError(
                f"vocab_size={vocab_size}: too small for 256 bytes, 3 specials and {sentinel_count} sentinels"
            )
        self.vocab_size, self.sentinel_count = vocab_size, sentinel_count

    def sentinels(self, **policies: Any) -> Sentinels:
        return Sentinels.t5(self.vocab_size, self.sentinel_count, **policies)

    def encode(self, text: str | bytes) -> npt.NDArray[np.int32]:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32) + self.offset

    def decode(self, ids: Any) -> str:
        """Text of ``ids``; sentinels as ``<extra_id_k>``, eos as ``</s>``, pads and -100 dropped."""
        out: list[str] = []
        buf = bytearray()
        for t in np.asarray(ids).tolist():
            if self.offset <= t < self.offset + 256:
                buf.append(t - self.offset)
                continue
            out.append(buf.decode("utf-8", errors="replace"))
            buf.clear()
            if t >= self.vocab_size - self.sentinel_count:
                out.append(f"<extra_id_{self.vocab_size - 1 - t}>")
            elif t == self.eos_id:
                out.append("</s>")
            elif t == self.unk_id:
                out.append("<unk>")
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


def stdlib_files() -> list[Path]:
    """The standard library's ``.py`` files (site-packages excluded), in a stable order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts)


def stdlib_documents(max_bytes: int | None = None) -> Iterator[bytes]:
    """The built-in corpus, one document per file, up to ``max_bytes`` in total."""
    total = 0
    for path in stdlib_files():
        data = path.read_bytes()
        if max_bytes is not None and total + len(data) > max_bytes:
            return
        total += len(data)
        yield data


def stdlib_stream(tokenizer: ByteTokenizer, max_bytes: int | None = None) -> npt.NDArray[np.int32]:
    """The built-in corpus tokenized into one flat stream, documents separated by EOS."""
    docs = [tokenizer.encode(d) for d in stdlib_documents(max_bytes)]
    eos = np.array([tokenizer.eos_id], dtype=np.int32)
    return np.concatenate([x for d in docs for x in (d, eos)]) if docs else np.zeros(0, np.int32)
