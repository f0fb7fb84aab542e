"""ul2.DenoisingStream (SPEC §8.9): the examples of DenoisingDataset over the documents'
concatenation, byte for byte; a saved state resumed gives the uninterrupted bytes; the buffer
stays bounded."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import ul2
from hypothesis import given
from hypothesis import strategies as st

SENTINELS = ul2.Sentinels.t5(1000, 60, on_overflow="cap")
MIXTURE = ul2.Mixture(
    [
        (ul2.SpanCorruption(3.0, 0.15, prefix=(7,)), 1.0),
        (ul2.SpanCorruption(8.0, 0.5), 1.0),
        (ul2.PrefixLM(0.5), 1.0),
        (ul2.CausalLM(prefix=(8, 9)), 0.5),
    ]
)

Batch = dict[str, npt.NDArray[Any]]


def _docs(lengths: list[int], seed: int, dtype: type = np.int32) -> list[npt.NDArray[Any]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(2, 900, size=n).astype(dtype) for n in lengths]


def _offsets(docs: list[npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    return np.cumsum([0] + [len(d) for d in docs]).astype(np.int64)


def _assert_same(got: Batch, want: Batch) -> None:
    assert list(got) == list(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        assert np.array_equal(got[name], want[name]), name


def _expected(ds: ul2.DenoisingDataset, batch_size: int | None) -> list[Batch]:
    if batch_size is None:
        return [ds[k] for k in range(len(ds))]
    return [ds.batch(list(range(i, min(i + batch_size, len(ds))))) for i in range(0, len(ds), batch_size)]


setups = st.fixed_dictionaries(
    {
        "lengths": st.lists(
            st.one_of(st.integers(0, 3), st.integers(0, 60), st.integers(0, 400)), min_size=1, max_size=10
        ),
        "seed": st.integers(0, 2**16),
        "mode": st.sampled_from(["concat", "respect"]),
        "separator": st.booleans(),
        "pack": st.booleans(),
        "budget": st.sampled_from(
            [{"inputs_length": 32}, {"inputs_length": 48, "targets_length": 24}, {"sequence_length": 64}]
        ),
        "batch_size": st.one_of(st.none(), st.integers(1, 4)),
    }
)


def _build(s: dict[str, Any], docs: Any, **extra: Any) -> tuple[ul2.DenoisingStream, dict[str, Any]]:
    sep = 1 if s["separator"] and s["mode"] == "concat" else None
    kw: dict[str, Any] = {
        "sentinels": SENTINELS,
        "pack": s["pack"],
        "seed": s["seed"],
        **s["budget"],
        **extra,
    }
    stream = ul2.DenoisingStream(
        docs, MIXTURE, documents_mode=s["mode"], separator_id=sep, batch_size=s["batch_size"], **kw
    )
    return stream, {"documents": s["mode"], "separator_id": sep, **kw}


@given(setups)
def test_stream_equals_the_dataset_over_the_concatenation(s: dict[str, Any]) -> None:
    docs = _docs(s["lengths"], s["seed"])
    stream, kw = _build(s, iter(docs))
    try:
        ds = ul2.DenoisingDataset(np.concatenate(docs), MIXTURE, doc_offsets=_offsets(docs), **kw)
    except ValueError as e:
        # The dataset refuses at construction what the stream refuses when it gets there.
        with pytest.raises(ValueError) as raised:
            list(stream)
        assert str(raised.value) == str(e)
        return
    got = list(stream)
    want = _expected(ds, s["batch_size"])
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        _assert_same(g, w)
    c = stream.counts
    assert (stream.tail, c["samples"], c["items"], c["documents"]) == (
        ds.tail,
        ds.num_samples,
        len(ds),
        len(docs),
    )
    assert c["tokens"] + stream.tail == ds.stream_length
    assert next(stream, None) is None  # exhausted stays exhausted


class _Stateful:
    """A source with a state of its own (as datasets.IterableDataset has): its position."""

    def __init__(self, docs: list[npt.NDArray[Any]]) -> None:
        self.docs, self.at = docs, 0

    def __iter__(self) -> Iterator[npt.NDArray[Any]]:
        while self.at < len(self.docs):
            self.at += 1
            yield self.docs[self.at - 1]

    def state_dict(self) -> dict[str, int]:
        return {"at": self.at}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.at = state["at"]


@given(setups, st.integers(0, 12), st.booleans())
def test_a_saved_state_resumes_the_uninterrupted_bytes(s: dict[str, Any], stop: int, stateful: bool) -> None:
    docs = _docs(s["lengths"], s["seed"])
    source = (lambda: _Stateful(docs)) if stateful else (lambda: iter(docs))
    whole, _ = _build(s, source())
    try:
        want = list(whole)
    except ValueError:
        return  # refused: test_stream_equals_the_dataset_over_the_concatenation checks how
    first, _ = _build(s, source())
    got = [b for _, b in zip(range(stop), first, strict=False)]
    state = json.loads(json.dumps(first.state_dict()))  # plain values
    # Pending: fewer than batch_size items (a packed row's samples have at most its width, about
    # two raw lengths, of raw tokens) and less than one raw length no sample has taken.
    n, raw = s["batch_size"] or 1, max(first.raw_lengths)
    assert len(state["pending"]) <= (n * (2 * raw + 8) if s["pack"] else n * raw) + raw
    resumed, _ = _build(s, source())
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    got += list(resumed)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        _assert_same(g, w)
    assert resumed.tail == whole.tail
    assert resumed.counts["samples"] == whole.counts["samples"]
    assert resumed.counts["items"] == whole.counts["items"]


def test_a_state_of_another_configuration_is_refused() -> None:
    docs = _docs([100, 200], 0)
    a = ul2.DenoisingStream(iter(docs), MIXTURE, sentinels=SENTINELS, inputs_length=32)
    next(a)
    state = a.state_dict()
    for other in (
        {"inputs_length": 32, "seed": 1},
        {"inputs_length": 32, "epoch": 1},
        {"inputs_length": 48},
        {"inputs_length": 32, "pack": True},
    ):
        b = ul2.DenoisingStream(iter(docs), MIXTURE, sentinels=SENTINELS, **other)
        with pytest.raises(ValueError, match="another configuration"):
            b.load_state_dict(state)
    c = ul2.DenoisingStream(
        iter(docs), MIXTURE, sentinels=SENTINELS, inputs_length=32, documents_mode="respect"
    )
    with pytest.raises(ValueError, match="another configuration"):
        c.load_state_dict(state)
    with pytest.raises(ValueError, match="version"):
        c.load_state_dict({"key": 0})
    with pytest.raises(ValueError, match="before iterating"):
        a.load_state_dict(state)


def test_epochs_flow_through() -> None:
    docs = _docs([300, 500], 3)
    for epoch in (0, 2):
        ds = ul2.DenoisingDataset(
            np.concatenate(docs), MIXTURE, sentinels=SENTINELS, inputs_length=32, epoch=epoch
        )
        got = list(
            ul2.DenoisingStream(iter(docs), MIXTURE, sentinels=SENTINELS, inputs_length=32, epoch=epoch)
        )
        for k, g in enumerate(got):
            _assert_same(g, ds[k])


def test_memory_is_one_raw_length_plus_one_document_and_a_batch() -> None:
    """20,000 documents (4 M tokens) stream through a buffer that never grows with the stream."""

    def documents() -> Iterator[npt.NDArray[np.int32]]:
        rng = np.random.default_rng(0)
        for _ in range(20_000):
            yield rng.integers(2, 900, size=int(rng.integers(0, 400)), dtype=np.int32)

    stream = ul2.DenoisingStream(documents(), MIXTURE, sentinels=SENTINELS, inputs_length=32, batch_size=8)
    bound = max(stream.raw_lengths) * (8 + 1) + 400 + 1
    most = 0
    for _ in stream:
        most = max(most, stream.buffered)
    assert 0 < most <= bound
    assert stream.counts["documents"] == 20_000
    assert len(json.dumps(stream.state_dict())) < 4096


def test_bad_arguments_name_themselves() -> None:
    docs = [np.arange(2, 50, dtype=np.int32)]
    with pytest.raises(ValueError, match="documents_mode='both'"):
        ul2.DenoisingStream(docs, MIXTURE, sentinels=SENTINELS, inputs_length=32, documents_mode="both")
    with pytest.raises(ValueError, match="separator_id"):
        ul2.DenoisingStream(
            docs, MIXTURE, sentinels=SENTINELS, inputs_length=32, documents_mode="respect", separator_id=1
        )
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            ul2.DenoisingStream(docs, MIXTURE, sentinels=SENTINELS, inputs_length=32, batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError, match="documents='concat': DenoisingStream takes the mode as documents_mode="
    ):
        ul2.DenoisingStream(docs, MIXTURE, sentinels=SENTINELS, inputs_length=32, documents="concat")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"documents\[i\]: dtype"):
        list(ul2.DenoisingStream([np.ones(40)], MIXTURE, sentinels=SENTINELS, inputs_length=32))
    bad = [docs[0], np.array([5, -3] + [4] * 200, dtype=np.int32)]
    with pytest.raises(ValueError, match="token -3 at position 49") as want:
        ds = ul2.DenoisingDataset(np.concatenate(bad), MIXTURE, sentinels=SENTINELS, inputs_length=32)
        ds.batch(list(range(len(ds))))
    with pytest.raises(ValueError) as got:
        list(ul2.DenoisingStream(bad, MIXTURE, sentinels=SENTINELS, inputs_length=32))
    assert str(got.value) == str(want.value)


def test_documents_of_any_token_dtype_and_strided_views() -> None:
    base = np.arange(2000, dtype=np.int64) % 900 + 2
    docs: list[Any] = [base[:300].astype(np.uint16), base[300:900:2], base[900:].astype(np.uint32)]
    flat = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
    ds = ul2.DenoisingDataset(
        flat, MIXTURE, sentinels=SENTINELS, inputs_length=32, doc_offsets=_offsets(docs)
    )
    for k, g in enumerate(ul2.DenoisingStream(docs, MIXTURE, sentinels=SENTINELS, inputs_length=32)):
        _assert_same(g, ds[k])


def test_a_document_wider_than_the_first_ones_widens_the_buffer() -> None:
    """uint16 documents, then one with an id past 65535: the stream widens, as np.concatenate does."""
    sentinels = ul2.Sentinels.t5(100_000, 60, on_overflow="cap")
    docs: list[Any] = [
        np.full(300, 7, np.uint16),
        np.array([70_000] * 50 + [-1], np.int64),
        np.arange(2, 200, dtype=np.uint16),
    ]
    flat = np.concatenate(docs)
    with pytest.raises(ValueError) as want:
        ds = ul2.DenoisingDataset(
            flat, MIXTURE, sentinels=sentinels, inputs_length=32, doc_offsets=_offsets(docs)
        )
        ds.batch(list(range(len(ds))))
    with pytest.raises(ValueError) as got:
        list(ul2.DenoisingStream(docs, MIXTURE, sentinels=sentinels, inputs_length=32))
    assert str(got.value) == str(want.value)
    docs[1] = docs[1][:-1]
    flat = np.concatenate(docs)
    ds = ul2.DenoisingDataset(
        flat, MIXTURE, sentinels=sentinels, inputs_length=32, doc_offsets=_offsets(docs)
    )
    got_all = list(ul2.DenoisingStream(docs, MIXTURE, sentinels=sentinels, inputs_length=32))
    assert len(got_all) == len(ds)
    for k, g in enumerate(got_all):
        _assert_same(g, ds[k])


def test_a_hugging_face_streaming_dataset_resumes_through_its_own_state() -> None:
    datasets = pytest.importorskip("datasets")
    docs = _docs([int(n) for n in np.random.default_rng(5).integers(0, 300, size=40)], 5)
    table = datasets.Dataset.from_dict({"input_ids": docs})

    def stream() -> ul2.DenoisingStream:
        # A new dataset object each time, as a restarted job builds (HF keeps a loaded state
        # for every later pass of the same object).
        hf = table.to_iterable_dataset(num_shards=4).with_format("numpy")
        return ul2.DenoisingStream(
            hf, MIXTURE, sentinels=SENTINELS, inputs_length=32, batch_size=3, column="input_ids"
        )

    want = list(stream())
    ds = ul2.DenoisingDataset(np.concatenate(docs), MIXTURE, sentinels=SENTINELS, inputs_length=32)
    for w, e in zip(want, _expected(ds, 3), strict=True):
        _assert_same(w, e)
    for stop in (0, 1, 5, len(want) - 1):
        first = stream()
        got = [b for _, b in zip(range(stop), first, strict=False)]
        state = first.state_dict()
        assert (state["source"] is None) == (state["document"] == 0)  # its own state, before that document
        resumed = stream()
        resumed.load_state_dict(state)
        got += list(resumed)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _assert_same(g, w)


def test_the_readme_snippets_run(tmp_path: Any) -> None:
    pytest.importorskip("datasets")
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Streams of documents\n", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    code += "\nassert len(first) == 3 and rest and sorted(batch) == sorted(first[0]) and state['source']\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "'tail'" in done.stdout
