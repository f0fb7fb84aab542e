"""Tokenizers for the command line and ``ul2.prepare``: the built-in ByT5 byte tokenizer
(``ul2.sources.ByteTokenizer``), a Hugging Face ``tokenizer.json`` (via ``tokenizers``) and a
SentencePiece model (via ``sentencepiece``). Each finds its sentinels by their ``<extra_id_k>``
names; a SentencePiece model without them can get ``extra_ids`` appended after its vocabulary,
as seqio's ``SentencePieceVocabulary(extra_ids=...)`` does.

Every tokenizer here is a ``Tokenizer`` (``ul2.sources.Tokenizer``, the protocol): ``name``,
``vocab_size``, ``eos_id``, ``pad_id``, ``sentinel_ids``, ``sentinels(**policies)``, ``encode``,
``encode_batch``, ``decode`` and ``describe()``.
``tokenizers`` and ``sentencepiece`` are imported only when such a file is loaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._ul2 import Sentinels
from .sources import ByteTokenizer, Tokenizer

_EXTRA_ID = re.compile(r"<extra_id_(\d+)>")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _contiguous_extra_ids(found: dict[int, int], where: str) -> tuple[int, ...]:
    """Ids of ``<extra_id_0>``, ``<extra_id_1>``, ... from a ``k -> id`` map; gaps are an error."""
    ids = []
    for k in range(len(found)):
        if k not in found:
            raise ValueError(f"{where}: <extra_id_{k}> is missing but higher extra ids exist")
        ids.append(found[k])
    return tuple(ids)


class _Base:
    name: str
    vocab_size: int
    eos_id: int | None
    pad_id: int
    _sentinel_ids: tuple[int, ...]
    path: Path

    @property
    def sentinel_ids(self) -> tuple[int, ...]:
        return self._sentinel_ids

    def sentinels(self, **policies: Any) -> Sentinels:
        return Sentinels.from_ids(list(self._sentinel_ids), **policies)

    def encode(self, text: str) -> npt.NDArray[np.int32]:
        return self.encode_batch([text])[0]

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "path": str(self.path),
            "sha256": _sha256(self.path),
            "vocab_size": self.vocab_size,
            "sentinels": len(self._sentinel_ids),
            "first_sentinel_id": self._sentinel_ids[0],
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
        }


class HFTokenizer(_Base):
    """A Hugging Face ``tokenizers`` model from a ``tokenizer.json``. Text is encoded without
    the tokenizer's own special tokens (the denoisers add EOS themselves)."""

    name = "tokenizer.json"

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer as _Tok
        except ImportError:
            raise ValueError(
                f"{path}: a tokenizer.json needs the 'tokenizers' package (pip install 'ul2[tokenizers]')"
            ) from None
        self.path = Path(path)
        try:
            self._tok = _Tok.from_file(str(self.path))
        except Exception as e:  # tokenizers raises a bare Exception
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{path}: not a Hugging Face tokenizer.json ({first})") from None
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.vocab_size = max(
            self._tok.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1
        )
        found = {int(m.group(1)): i for t, i in vocab.items() if (m := _EXTRA_ID.fullmatch(t))}
        if not found:
            raise ValueError(f"{path}: no <extra_id_k> tokens; a denoising tokenizer needs sentinels")
        self._sentinel_ids = _contiguous_extra_ids(found, str(path))
        self.eos_id = next(
            (vocab[t] for t in ("</s>", "<eos>", "<|endoftext|>", "[SEP]") if t in vocab), None
        )
        self.pad_id = next((vocab[t] for t in ("<pad>", "[PAD]", "<|pad|>") if t in vocab), 0)

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int32) for e in encodings]

    def decode(self, ids: Any) -> str:
        return str(
            self._tok.decode([int(t) for t in np.asarray(ids).tolist() if t >= 0], skip_special_tokens=False)
        )


class SentencePieceTokenizer(_Base):
    """A SentencePiece ``.model``. Sentinels are its ``<extra_id_k>`` pieces, or, with
    ``extra_ids=N``, N ids appended after its vocabulary (``<extra_id_0>`` the highest), as
    seqio's ``SentencePieceVocabulary`` and T5's checkpoints do."""

    name = "sentencepiece"

    def __init__(self, path: str | Path, extra_ids: int | None = None) -> None:
        try:
            import sentencepiece as spm
        except ImportError:
            raise ValueError(
                f"{path}: a SentencePiece model needs the 'sentencepiece' package "
                "(pip install 'ul2[sentencepiece]')"
            ) from None
        self.path = Path(path)
        self._sp = spm.SentencePieceProcessor()
        try:
            self._sp.Load(str(self.path))
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ValueError(f"{path}: not a SentencePiece model ({first})") from None
        size = int(self._sp.GetPieceSize())
        found = {}
        for k in range(size):
            i = int(self._sp.PieceToId(f"<extra_id_{k}>"))
            if self._sp.IdToPiece(i) != f"<extra_id_{k}>":
                break
            found[k] = i
        if extra_ids:
            if found:
                raise ValueError(f"{path}: has <extra_id_k> pieces already; drop --extra-ids")
            self.vocab_size = size + extra_ids
            self._sentinel_ids = tuple(self.vocab_size - 1 - k for k in range(extra_ids))
        elif found:
            self.vocab_size = size
            self._sentinel_ids = tuple(found[k] for k in range(len(found)))
        else:
            raise ValueError(
                f"{path}: no <extra_id_k> pieces; pass --extra-ids N to append N sentinels as seqio does"
            )
        self.extra_ids = extra_ids or 0
        eos, pad = int(self._sp.eos_id()), int(self._sp.pad_id())
        self.eos_id = eos if eos >= 0 else None
        self.pad_id = pad if pad >= 0 else 0

    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]:
        return [np.asarray(ids, dtype=np.int32) for ids in self._sp.Encode(list(texts))]

    def decode(self, ids: Any) -> str:
        size = int(self._sp.GetPieceSize())
        return str(self._sp.Decode([int(t) for t in np.asarray(ids).tolist() if 0 <= t < size]))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "extra_ids": self.extra_ids}


def load_tokenizer(spec: str | None = None, *, extra_ids: int | None = None) -> Tokenizer:
    """``"byt5"`` (the default), a path to a ``tokenizer.json`` or a SentencePiece ``.model``."""
    if spec is None or spec.lower() in ("byt5", "bytes"):
        if extra_ids:
            raise ValueError("--extra-ids applies to SentencePiece models only (byt5 has 125 sentinels)")
        return ByteTokenizer()
    path = Path(spec)
    if not path.exists():
        raise ValueError(f"tokenizer {spec!r}: no such file (give 'byt5', a tokenizer.json or a .model)")
    if path.is_dir() and (path / "tokenizer.json").is_file():
        path = path / "tokenizer.json"
    if path.suffix == ".json":
        if extra_ids:
            raise ValueError("--extra-ids applies to SentencePiece models only")
        return HFTokenizer(path)
    if path.suffix == ".model":
        return SentencePieceTokenizer(path, extra_ids=extra_ids)
    raise ValueError(f"tokenizer {spec!r}: expected 'byt5', a tokenizer.json or a SentencePiece .model")


def pieces(tokenizer: Tokenizer, ids: npt.ArrayLike) -> list[tuple[str, str]]:
    """``ids`` as ``(kind, text)`` pieces for display: ``"text"`` (decoded runs of ordinary
    tokens), ``"sentinel"`` (``<extra_id_k>``), ``"eos"`` (``</s>``); -100 (label padding) dropped."""
    values: list[int] = np.asarray(ids).tolist()
    index = {t: k for k, t in enumerate(tokenizer.sentinel_ids)}
    out: list[tuple[str, str]] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            out.append(("text", tokenizer.decode(run)))
            run.clear()

    for t in values:
        if t in index:
            flush()
            out.append(("sentinel", f"<extra_id_{index[t]}>"))
        elif t == tokenizer.eos_id:
            flush()
            out.append(("eos", "</s>"))
        elif t < 0:
            continue
        else:
            run.append(t)
    flush()
    return out
