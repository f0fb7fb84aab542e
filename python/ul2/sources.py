"""Token sources: the built-in corpus (the Python standard library's own source files, present
on every machine), a byte-level tokenizer with the ByT5 convention, and readers that turn text,
JSONL and Parquet files into one token stream with document offsets."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import os
import sysconfig
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ._ul2 import Sentinels


class Tokenizer(Protocol):
    """What the corpus readers, the command line and ``ul2.prepare`` use of a tokenizer: the
    built-in ``ByteTokenizer`` and ``ul2.tokenizers``' ``HFTokenizer`` and
    ``SentencePieceTokenizer`` have it."""

    @property
    def name(self) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def eos_id(self) -> int | None: ...
    @property
    def pad_id(self) -> int: ...
    @property
    def sentinel_ids(self) -> tuple[int, ...]: ...
    def sentinels(self, **policies: Any) -> Sentinels: ...
    def encode(self, text: str) -> npt.NDArray[np.int32]: ...
    def encode_batch(self, texts: Sequence[str]) -> list[npt.NDArray[np.int32]]: ...
    def decode(self, ids: npt.ArrayLike) -> str: ...
    def describe(self) -> dict[str, Any]: ...


class ByteTokenizer:
    """ByT5's byte-level vocabulary: pad 0, eos 1, unk 2, byte ``b`` -> ``b + 3``, and
    ``sentinel_count`` sentinels at the top of a ``vocab_size``-id vocabulary
    (``<extra_id_0>`` = ``vocab_size - 1``)."""

    pad_id, eos_id, unk_id, offset = 0, 1, 2, 3
    name = "byt5"

    def __init__(self, vocab_size: int = 384, sentinel_count: int = 125) -> None:
        if vocab_size - sentinel_count < 256 + self.offset:
            raise ValueError(
                f"vocab_size={vocab_size}: too small for 256 bytes, 3 specials and {sentinel_count} sentinels"
            )
        self.vocab_size, self.sentinel_count = vocab_size, sentinel_count

    @property
    def sentinel_ids(self) -> tuple[int, ...]:
        return tuple(self.vocab_size - 1 - k for k in range(self.sentinel_count))

    def sentinels(self, **policies: Any) -> Sentinels:
        return Sentinels.t5(self.vocab_size, self.sentinel_count, **policies)

    def encode(self, text: str | bytes) -> npt.NDArray[np.int32]:
        data = text.encode("utf-8") if isinstance(text, str) else text
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32) + self.offset

    def encode_batch(self, texts: Sequence[str | bytes]) -> list[npt.NDArray[np.int32]]:
        return [self.encode(t) for t in texts]

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

    def describe(self) -> dict[str, Any]:
        """What a manifest records about this tokenizer."""
        return {
            "kind": "byt5",
            "vocab_size": self.vocab_size,
            "sentinels": self.sentinel_count,
            "pad_id": self.pad_id,
            "eos_id": self.eos_id,
        }


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


# --- Files in, one token stream out -------------------------------------------------------

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")


def input_kind(path: Path) -> str:
    """``"jsonl"``, ``"parquet"`` or ``"text"`` (one document per file), by file name."""
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES) or name.endswith(tuple(s + ".gz" for s in JSONL_SUFFIXES)):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "text"


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files named by ``inputs``; a directory stands for its files (recursively, sorted, hidden
    ones skipped). A missing path is a ``FileNotFoundError`` naming it."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.parts[len(p.parts) :])
            )
            if not found:
                raise FileNotFoundError(f"{item}: directory holds no files")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    return out


def _open_binary(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else path.open("rb")


def read_documents(path: Path, field: str = "text") -> Iterator[str | bytes]:
    """The documents of one file: a text file is one document (its bytes); each line of a JSONL
    file and each row of a Parquet file is one (its ``field``). A file that cannot be read
    (bad UTF-8 in JSONL, corrupt gzip or Parquet) is a ``ValueError`` naming it, the line where
    there is one, and the reason."""
    try:
        yield from _read_documents(path, field)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: corrupt gzip data ({e or 'the file ends too soon'})") from None


def _read_documents(path: Path, field: str) -> Iterator[str | bytes]:
    kind = input_kind(path)
    if kind == "text":
        with _open_binary(path) as f:
            yield f.read()
    elif kind == "jsonl":
        with _open_binary(path) as f:
            for lineno, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise ValueError(
                        f"{path}:{lineno}: invalid UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1}: "
                        f"{e.reason})"
                    ) from None
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict) or field not in obj:
                    keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
                    raise ValueError(
                        f"{path}:{lineno}: no field {field!r} (found {keys}); pick one with --field"
                    )
                value = obj[field]
                if not isinstance(value, str):
                    raise ValueError(f"{path}:{lineno}: field {field!r} is {type(value).__name__}, not text")
                yield value
    else:
        try:
            import pyarrow.parquet as pq  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install 'ul2[arrow]')") from None
        import pyarrow as pa  # type: ignore[import-untyped,import-not-found,unused-ignore]

        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
        names = pf.schema_arrow.names
        if field not in names:
            raise ValueError(f"{path}: no column {field!r} (found {names}); pick one with --field")
        batches = pf.iter_batches(columns=[field], batch_size=4096)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as e:
                raise ValueError(f"{path}: corrupt Parquet data ({e})") from None
            if batch is None:
                break
            for value in batch.column(0).to_pylist():
                if value is None:
                    continue
                if not isinstance(value, (str, bytes)):
                    raise ValueError(f"{path}: column {field!r} holds {type(value).__name__}, not text")
                yield value


@dataclass
class Corpus:
    """Documents tokenized into one stream: ``tokens`` (int32) and ``doc_offsets`` (each
    document's start, then ``len(tokens)``). Empty documents are skipped and counted.
    ``phases`` holds what ``tokenize`` measured (``"read"`` and ``"tokenize"``, see there), in
    the form ``ul2.prepare``'s ``phases=`` records."""

    tokens: npt.NDArray[np.int32]
    doc_offsets: npt.NDArray[np.int64]
    sources: list[dict[str, Any]] = field(default_factory=list)
    empty_documents: int = 0
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def documents(self) -> int:
        return len(self.doc_offsets) - 1

    def fingerprint(self) -> str:
        """SHA-256 of the tokens and document boundaries (what a resumed job checks)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.tokens, dtype="<i4").tobytes())
        h.update(np.ascontiguousarray(self.doc_offsets, dtype="<i8").tobytes())
        return h.hexdigest()

    def stream(self, separator_id: int | None) -> npt.NDArray[np.int32]:
        """The documents joined with ``separator_id`` between them (what ``DenoisingDataset``
        sees with ``separator_id``), for checking or inspecting."""
        if separator_id is None or self.documents <= 1:
            return self.tokens
        starts = self.doc_offsets[1:-1]
        return np.insert(self.tokens, starts, separator_id).astype(np.int32)


def _text(doc: str | bytes) -> str:
    return doc.decode("utf-8", errors="replace") if isinstance(doc, bytes) else doc


def _encode(tokenizer: Tokenizer, batch: list[str | bytes]) -> tuple[list[npt.NDArray[np.int32]], int]:
    """One batch's ids and its size in UTF-8 bytes."""
    size = sum(len(d) if isinstance(d, bytes) else len(d.encode("utf-8")) for d in batch)
    # Bytes go to the byte tokenizer as they are: decoding them could replace some.
    if isinstance(tokenizer, ByteTokenizer):
        encoded = tokenizer.encode_batch(batch)
    else:
        encoded = tokenizer.encode_batch([_text(d) for d in batch])
    return [np.asarray(ids, dtype=np.int32) for ids in encoded], size


def tokenize(
    docs: Iterable[str | bytes], tokenizer: Tokenizer, *, batch_size: int = 1024, workers: int | None = None
) -> Corpus:
    """Encode ``docs`` with ``tokenizer`` (``encode_batch`` on batches of ``batch_size``
    documents) into a Corpus.

    ``workers`` batches are encoded at once on threads (default: one per CPU; 1 encodes them one
    after another in this thread). Results are taken in the documents' order, so the tokens are
    the same for any ``workers``. A Hugging Face tokenizer releases the GIL while it encodes,
    and its ``encode_batch`` runs on Rust threads of its own as well.

    The corpus's ``phases``: ``read``, the seconds spent drawing documents from ``docs`` (reading
    and parsing the files); ``tokenize``, the rest of the call (encoding, and waiting for the
    workers), with the tokens, documents and UTF-8 bytes encoded and their rates.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1")
    if workers is None:
        workers = os.cpu_count() or 1
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers={workers!r}: must be an int >= 1 (or None: one per CPU)")
    start = time.perf_counter()
    reading = 0.0
    pieces: list[npt.NDArray[np.int32]] = []
    empty = documents = size = 0

    def batches() -> Iterator[list[str | bytes]]:
        nonlocal reading
        it = iter(docs)
        while True:
            t = time.perf_counter()
            batch = list(itertools.islice(it, batch_size))
            reading += time.perf_counter() - t
            if not batch:
                return
            yield batch

    def take(encoded: list[npt.NDArray[np.int32]], nbytes: int) -> None:
        nonlocal empty, documents, size
        documents += len(encoded)
        size += nbytes
        for ids in encoded:
            if len(ids):
                pieces.append(ids)
            else:
                empty += 1

    if workers == 1:
        for batch in batches():
            take(*_encode(tokenizer, batch))
    else:
        pool = ThreadPoolExecutor(workers)
        try:
            # At most 2 * workers batches in flight: the documents are read as the workers go,
            # not all at once; the oldest is always taken first, which keeps the order.
            pending: deque[Future[tuple[list[npt.NDArray[np.int32]], int]]] = deque()
            for batch in batches():
                pending.append(pool.submit(_encode, tokenizer, batch))
                if len(pending) >= 2 * workers:
                    take(*pending.popleft().result())
            while pending:
                take(*pending.popleft().result())
        finally:
            # After a Ctrl-C or an unreadable document, the batches not begun are dropped, not
            # encoded before the error can go on.
            pool.shutdown(cancel_futures=True)
    lengths = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    encoding = time.perf_counter() - start - reading
    phases = {
        "read": {"seconds": reading},
        "tokenize": {
            "seconds": encoding,
            "tokens": len(tokens),
            "documents": documents,
            "bytes": size,
            "workers": workers,
            "tokens_per_s": len(tokens) / max(encoding, 1e-9),
            "bytes_per_s": size / max(encoding, 1e-9),
        },
    }
    return Corpus(tokens, offsets, empty_documents=empty, phases=phases)


def load_corpus(
    inputs: Sequence[str | Path], tokenizer: Tokenizer, *, field: str = "text", workers: int | None = None
) -> Corpus:
    """Tokenize the files ``inputs`` (text, JSONL with ``field``, Parquet column ``field``;
    directories recursively), or the built-in corpus (the standard library's sources) when
    ``inputs`` is empty; ``workers`` as in ``tokenize``."""
    if not inputs:
        files = stdlib_files()
        corpus = tokenize(stdlib_documents(), tokenizer, workers=workers)
        corpus.sources = [
            {
                "builtin": "python-stdlib",
                "root": sysconfig.get_paths()["stdlib"],
                "files": len(files),
                "bytes": sum(f.stat().st_size for f in files),
            }
        ]
        return corpus
    paths = expand_inputs(inputs)

    def docs() -> Iterator[str | bytes]:
        for p in paths:
            yield from read_documents(p, field)

    corpus = tokenize(docs(), tokenizer, workers=workers)
    # Resolved, so that the same files under another spelling of their paths are the same job.
    corpus.sources = [
        {"path": str(p.resolve()), "kind": input_kind(p), "bytes": p.stat().st_size} for p in paths
    ]
    return corpus
