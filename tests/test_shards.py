"""``prepare(lean=True)`` and ``ul2.shards``: lean shards read back as the full arrays, byte for
byte, under every format and option; they resume like full ones; they take at most 1.5x the
tokens' bytes; and a damaged one is a ValueError naming its file, never other arrays."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ul2
import ul2.shards
from hypothesis import given, settings
from hypothesis import strategies as st
from ul2.prepare import prepare
from ul2.sources import ByteTokenizer

TOK = ByteTokenizer()
FORMATS = ("hf", "seqio", "decoder", "seqio_decoder")


def stream(n: int = 3000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 259, size=n, dtype=np.int32)


def dataset(tokens: np.ndarray, preset: str = "t5", **kw: Any) -> ul2.DenoisingDataset:
    fmt = kw.get("format", "hf")
    budget = {"inputs_length": 64} if fmt in ("hf", "seqio") else {"sequence_length": 128}
    mixture = getattr(ul2.presets, preset)()
    return ul2.DenoisingDataset(tokens, mixture, sentinels=TOK.sentinels(), **{**budget, **kw})


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        assert (x.dtype, x.shape) == (y.dtype, y.shape), name
        assert np.ascontiguousarray(x).tobytes() == np.ascontiguousarray(y).tobytes(), name


@st.composite
def configurations(draw: st.DrawFn) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "format": draw(st.sampled_from(FORMATS)),
        "pack": draw(st.booleans()),
        "bidirectional_mask": draw(st.booleans()),
        "dtype": draw(st.sampled_from(["int32", "int64"])),
        "seed": draw(st.integers(0, 2**64 - 1)),
    }
    preset = draw(st.sampled_from(["t5", "ul2"]))
    names = [n for n in dataset(stream(), preset, **kw).batch([0]) if n != "denoiser"]
    if draw(st.booleans()):
        kw["fields"] = draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
    return {"preset": preset, "documents": draw(st.sampled_from(["concat", "respect"])), **kw}


@settings(max_examples=60)
@given(configurations(), st.integers(5, 40))
def test_lean_shards_read_back_as_the_full_arrays(config: dict[str, Any], shard_size: int) -> None:
    config = dict(config)
    preset, documents = config.pop("preset"), config.pop("documents")
    tokens = stream()
    offsets = np.array([0, 700, 1900, 3000]) if documents == "respect" else None
    ds = dataset(tokens, preset, doc_offsets=offsets, documents=documents, **config)
    with tempfile.TemporaryDirectory() as tmp:
        full, lean = Path(tmp, "full"), Path(tmp, "lean")
        m_full = prepare(ds, full, shard_size=shard_size)
        m_lean = prepare(ds, lean, shard_size=shard_size, lean=True)
        assert m_lean["config"]["lean"] and not m_full["config"]["lean"]
        assert m_lean["features"] == m_full["features"]
        assert m_lean["counts"]["denoisers"] == m_full["counts"]["denoisers"]
        a, b = ul2.shards.Shards(full), ul2.shards.Shards(lean)
        assert len(a) == len(b) == m_full["num_shards"]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            lo, hi = m_full["shards"][i]["items"]
            assert_same(x, ds.batch(np.arange(lo, hi)))
            assert_same(y, x)
        assert sorted(p.name for p in (lean / "shard-00000").iterdir()) == sorted(
            f"{n}.npy"
            for n in ("first", "second", "segments", "row_starts")
            if n != "second" or ds.targets_length
        )


@pytest.mark.parametrize(
    ("kw", "full_at_least"),
    [({"inputs_length": 512}, 2.0), ({"sequence_length": 1024}, 3.0)],
    ids=["hf", "decoder"],
)
def test_lean_t5_shards_take_at_most_1_5x_the_tokens(
    tmp_path: Path, kw: dict[str, Any], full_at_least: float
) -> None:
    ds = ul2.DenoisingDataset(stream(100_000), ul2.presets.t5(), sentinels=TOK.sentinels(), **kw)
    assert ds.dtype == np.int32
    full = prepare(ds, tmp_path / "full", shard_size=64)["counts"]
    lean = prepare(ds, tmp_path / "lean", shard_size=64, lean=True)["counts"]
    assert full["token_bytes"] == lean["token_bytes"] == 4 * full["tokens_used"]
    on_disk = sum(p.stat().st_size for p in (tmp_path / "lean").glob("shard-*/*"))
    assert lean["bytes"] == on_disk
    assert lean["bytes_per_token_byte"] == lean["bytes"] / lean["token_bytes"] <= 1.5
    assert full["bytes_per_token_byte"] >= full_at_least


def test_a_lean_job_resumes_and_refuses_a_full_one(tmp_path: Path) -> None:
    ds = dataset(stream(), pack=True)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    prepare(ds, whole, shard_size=4, lean=True)
    first = prepare(ds, parts, shard_size=4, lean=True, max_shards=2)
    assert not first["complete"]
    with pytest.raises(ValueError, match="not written yet"):
        ul2.shards.Shards(parts)[first["num_shards"] - 1]
    with pytest.raises(ValueError, match=r"holds a different job \(lean: true != false\)"):
        prepare(ds, parts, shard_size=4)
    assert prepare(ds, parts, shard_size=4, lean=True)["complete"]
    assert files(parts).keys() == files(whole).keys()
    assert all(files(parts)[k] == files(whole)[k] for k in files(whole) if k != "manifest.json")


def test_parquet_shards_read_back_and_lean_parquet_is_refused(tmp_path: Path) -> None:
    ds = dataset(stream(), pack=True)
    with pytest.raises(ValueError, match="lean=True with output_format='parquet'"):
        prepare(ds, tmp_path / "p", lean=True, output_format="parquet")
    prepare(ds, tmp_path / "p", shard_size=8, output_format="parquet")
    prepare(ds, tmp_path / "n", shard_size=8)
    for x, y in zip(ul2.shards.Shards(tmp_path / "p"), ul2.shards.Shards(tmp_path / "n"), strict=True):
        assert_same(x, {k: v for k, v in y.items() if k in x})
        assert "cu_seqlens" in y and "cu_seqlens" not in x  # batch-level: not a Parquet column


def lean_job(out: Path) -> Path:
    prepare(dataset(stream(), pack=True), out, shard_size=8, lean=True)
    return out / "shard-00001"


def test_a_truncated_lean_shard_names_its_file(tmp_path: Path) -> None:
    shard = lean_job(tmp_path / "out")
    path = shard / "first.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(ValueError, match="are not the ones the manifest records") as e:
        ul2.shards.load(tmp_path / "out", 1)
    assert str(shard) in str(e.value)
    ul2.shards.load(tmp_path / "out", 0)  # the others still read


@pytest.mark.parametrize(
    ("name", "damage", "message"),
    [
        ("segments", lambda a: a.__setitem__((0, 1), 10**6), r"segments=row 0: 1000000 inputs"),
        ("segments", lambda a: a.__setitem__((0, 0), 2**31), "segments=row 0: denoiser 2147483648"),
        ("row_starts", lambda a: a.__setitem__(1, a[2] + 1), r"row_starts=\[1\]=.*must not decrease"),
        ("row_starts", lambda a: a.__setitem__(-1, a[-1] - 1), "row_starts=0.*must run from 0"),
    ],
    ids=["inputs-too-long", "denoiser-too-large", "decreasing", "short"],
)
def test_a_damaged_lean_shard_of_the_same_size_names_the_array_and_file(
    tmp_path: Path, name: str, damage: Any, message: str
) -> None:
    shard = lean_job(tmp_path / "out")
    path = shard / f"{name}.npy"
    a = np.load(path)
    damage(a)
    np.save(path, a)
    with pytest.raises(ValueError, match=message) as e:
        ul2.shards.Shards(tmp_path / "out")[1]
    assert str(shard) in str(e.value)


def test_shards_index_and_manifest_errors(tmp_path: Path) -> None:
    shards = ul2.shards.Shards(lean_job(tmp_path / "out").parent)
    n = len(shards)
    assert_same(shards[-1], shards[n - 1])
    with pytest.raises(IndexError, match=f"index={n}: out of range for {n} shards"):
        shards[n]
    with pytest.raises(TypeError, match="index=True: must be an int"):
        shards[True]
    with pytest.raises(ValueError, match=r"no manifest\.json"):
        ul2.shards.Shards(tmp_path)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest["ul2_version"] = "0.0.1"
    (tmp_path / "out" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"lean shards written by ul2 0\.0\.1"):
        ul2.shards.Shards(tmp_path / "out")
    with pytest.raises(ValueError, match="lean=1: must be True or False"):
        prepare(dataset(stream()), tmp_path / "other", lean=1)  # type: ignore[arg-type]
