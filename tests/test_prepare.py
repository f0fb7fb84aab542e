"""``ul2.prepare``: what may be deleted (only ul2's own files), one run per folder (a lock), the
tokens a job is bound to, and shards checked file by file on resume."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ul2
from ul2.prepare import prepare, token_fingerprint
from ul2.sources import ByteTokenizer

TOK = ByteTokenizer()


def dataset(tokens: np.ndarray) -> ul2.DenoisingDataset:
    return ul2.DenoisingDataset(tokens, ul2.presets.t5(), sentinels=TOK.sentinels(), inputs_length=32)


def stream(n: int = 3000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, 259, size=n, dtype=np.int32)


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- overwrite deletes only a ul2 prepare folder's own files ----------------------------------------


def test_overwrite_refuses_a_folder_that_prepare_did_not_write(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    (home / "notes.txt").write_text("mine")
    before = files(home)
    with pytest.raises(ValueError, match="not a ul2 prepare folder") as e:
        prepare(dataset(stream()), home, shard_size=8, overwrite=True)
    assert str(home) in str(e.value)
    assert files(home) == before
    # A manifest.json that some other tool wrote is no marker either.
    (home / "manifest.json").write_text('{"name": "my-package"}')
    with pytest.raises(ValueError, match="not a ul2 prepare folder"):
        prepare(dataset(stream()), home, shard_size=8, overwrite=True)
    assert (home / "notes.txt").read_text() == "mine"


def test_overwrite_keeps_files_ul2_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare(dataset(stream()), out, shard_size=8)
    (out / "README.md").write_text("my notes about these shards")
    (out / "extra").mkdir()
    (out / "extra" / "keep.bin").write_bytes(b"keep")
    manifest = prepare(dataset(stream(seed=1)), out, shard_size=16, overwrite=True)
    assert manifest["complete"] and manifest["config"]["shard_size"] == 16
    assert (out / "README.md").read_text() == "my notes about these shards"
    assert (out / "extra" / "keep.bin").read_bytes() == b"keep"
    shards = sorted(p.name for p in out.glob("shard-*"))
    assert shards == [s["path"] for s in manifest["shards"]]  # none left from the first run


def test_overwrite_refuses_a_folder_holding_an_input(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tokens = stream()
    prepare(dataset(tokens), out, shard_size=8)
    # The dataset reads a memmap inside the folder: deleting the folder would delete the corpus.
    path = out / "tokens.bin"
    tokens.tofile(path)
    mm = np.memmap(path, dtype=np.int32, mode="r")
    with pytest.raises(ValueError, match="holds an input") as e:
        prepare(dataset(mm), out, shard_size=8, overwrite=True)
    assert str(path) in str(e.value)
    assert path.read_bytes() == tokens.tobytes()
    # The job's input files (what the command line records) count too.
    with pytest.raises(ValueError, match="holds an input"):
        prepare(dataset(tokens), out, shard_size=8, job={"inputs": [{"path": str(path)}]}, overwrite=True)
    assert path.exists()


def test_out_inside_an_input_folder_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("text " * 200)
    job = {"inputs": [{"path": str(corpus / "a.txt")}, {"path": str(corpus)}]}
    with pytest.raises(ValueError, match="is inside the input folder"):
        prepare(dataset(stream()), corpus / "shards", shard_size=8, job=job)
    assert not (corpus / "shards").exists()


def test_out_that_is_a_file_is_refused_before_the_work(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_text("a file")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        prepare(dataset(stream()), f, shard_size=8, overwrite=True)
    assert f.read_text() == "a file"


# --- one run per folder -------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ul2
    from ul2.prepare import prepare
    from ul2.sources import ByteTokenizer

    tokens = np.random.default_rng(0).integers(3, 259, size=3000, dtype=np.int32)
    ds = ul2.DenoisingDataset(
        tokens, ul2.presets.t5(), sentinels=ByteTokenizer().sentinels(), inputs_length=32
    )

    def wait(manifest):
        print("started", flush=True)
        sys.stdin.readline()  # hold the folder until the test says go

    prepare(ds, sys.argv[1], shard_size=8, on_start=wait)
    print("done", flush=True)
    """
)


def test_a_second_run_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        try:
            assert holder.stdout.readline().strip() == "started"
            for overwrite in (False, True):
                with pytest.raises(ValueError, match="another ul2 prepare") as e:
                    prepare(dataset(stream()), out, shard_size=8, overwrite=overwrite)
                assert str(out) in str(e.value) and f"pid {holder.pid}" in str(e.value)
            holder.stdin.write("go\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "done"
        finally:
            holder.kill()
    # The holder finished its job untouched, and the folder is free again.
    assert prepare(dataset(stream()), out, shard_size=8)["complete"]
    whole = prepare(dataset(stream()), tmp_path / "whole", shard_size=8)
    assert files(out).keys() == files(tmp_path / "whole").keys() and whole["complete"]


# --- the job is bound to its tokens -------------------------------------------------------------


def test_resume_over_other_tokens_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tokens = stream()
    prepare(dataset(tokens), out, shard_size=8, max_shards=2)
    other = tokens.copy()
    other[1234] = 7  # one token, same length
    with pytest.raises(ValueError, match="other tokens"):
        prepare(dataset(other), out, shard_size=8)
    with pytest.raises(ValueError, match="other tokens"):
        prepare(dataset(tokens[:-50]), out, shard_size=8, max_items=40)
    # The same values in another dtype, or a list, are the same tokens.
    assert prepare(dataset(tokens.astype(np.int64)), out, shard_size=8)["complete"]
    record = json.loads((out / "manifest.json").read_text())["config"]["dataset"]["tokens"]
    assert record["length"] == len(tokens) and not record["sampled"]


def test_fingerprint_of_a_huge_memmap_samples_blocks(tmp_path: Path) -> None:
    path = tmp_path / "huge.bin"
    n = 10**9
    with path.open("wb") as f:
        f.truncate(4 * n)  # a sparse file: 4 GB that take no disk space
    mm = np.memmap(path, dtype=np.int32, mode="r")
    first = token_fingerprint(mm)
    assert first["length"] == n and first["sampled"]
    with path.open("r+b") as f:  # inside a sampled block: the last one
        f.seek(4 * n - 8)
        f.write(np.array([9, 9], dtype=np.int32).tobytes())
    assert token_fingerprint(np.memmap(path, dtype=np.int32, mode="r"))["sha256"] != first["sha256"]
    assert token_fingerprint(mm[:-1])["sha256"] != first["sha256"]


# --- resume checks each shard's files -----------------------------------------------------------


def test_resume_rewrites_damaged_shards(tmp_path: Path) -> None:
    tokens = stream()
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    prepare(dataset(tokens), whole, shard_size=8)
    manifest = prepare(dataset(tokens), parts, shard_size=8)
    entry = manifest["shards"][1]
    assert (
        entry["files"] == {f.name: f.stat().st_size for f in (parts / entry["path"]).iterdir()}
        and "input_ids.npy" in entry["files"]
    )
    ids = parts / "shard-00001" / "input_ids.npy"
    ids.write_bytes(ids.read_bytes()[:100])  # cut short
    (parts / "shard-00002" / "labels.npy").unlink()  # missing
    (parts / "shard-00003" / "stray.npy").write_bytes(b"x")  # one file too many
    resumed = prepare(dataset(tokens), parts, shard_size=8)
    assert resumed["complete"]
    assert files(parts).keys() - {"manifest.json"} == files(whole).keys() - {"manifest.json"}
    for name, data in files(whole).items():
        if name != "manifest.json":
            assert (parts / name).read_bytes() == data, name


def test_resume_rewrites_a_damaged_parquet_shard(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    tokens = stream()
    out = tmp_path / "pq"
    prepare(dataset(tokens), out, shard_size=8, output_format="parquet")
    good = (out / "shard-00000.parquet").read_bytes()
    (out / "shard-00000.parquet").write_bytes(good[: len(good) // 2])
    assert prepare(dataset(tokens), out, shard_size=8, output_format="parquet")["complete"]
    assert (out / "shard-00000.parquet").read_bytes() == good


# --- the manifest rebuilds the dataset ----------------------------------------------------------


def test_the_manifest_budget_rebuilds_the_same_dataset(tmp_path: Path) -> None:
    """With targets_length=None the manifest recorded the resolved width, and a dataset built
    from it planned CausalLM at another raw length (4099 against 511)."""
    mixture = ul2.Mixture([(ul2.SpanCorruption(64.0, 0.9), 1.0), (ul2.CausalLM(), 1.0)])
    tokens = stream(20000)
    ds = ul2.DenoisingDataset(tokens, mixture, sentinels=TOK.sentinels(), inputs_length=512)
    prepare(ds, tmp_path / "out", shard_size=64)
    cfg = json.loads((tmp_path / "out" / "manifest.json").read_text())["config"]["dataset"]
    rebuilt = ul2.DenoisingDataset(
        tokens,
        ul2.Mixture.from_dict(cfg["mixture"]),
        sentinels=TOK.sentinels(),
        inputs_length=cfg["inputs_length"],
        targets_length=cfg["targets_length"],
        sequence_length=cfg["sequence_length"],
    )
    assert rebuilt.raw_lengths == ds.raw_lengths
    assert cfg["targets_width"] == ds.targets_length == rebuilt.targets_length


def test_ctrl_c_while_a_shard_is_written_stays_a_keyboard_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Ctrl-C is raised at the first Python frame after it arrives; in ndarray.tofile that frame is
    # its isinstance(file, os.PathLike) check, and numpy 2.4 made the KeyboardInterrupt a TypeError
    # ("expected str, bytes or os.PathLike object, not BufferedWriter"). Here every such check
    # during a shard write raises, as a Ctrl-C there would: the write ends with a KeyboardInterrupt
    # or is not interrupted, never with another error.
    import abc
    import os

    from ul2.prepare import write_shard

    check = abc.ABCMeta.__instancecheck__

    def interrupted(cls: abc.ABCMeta, instance: object) -> bool:
        if cls is os.PathLike:
            raise KeyboardInterrupt
        return check(cls, instance)

    ds = dataset(stream())
    monkeypatch.setattr(abc.ABCMeta, "__instancecheck__", interrupted)
    try:
        entry = write_shard(ds, tmp_path, 0, 0, 8)
    except KeyboardInterrupt:
        monkeypatch.undo()
        assert not list(tmp_path.iterdir())  # the partial shard is removed
        entry = write_shard(ds, tmp_path, 0, 0, 8)
    monkeypatch.undo()
    # The files hold np.save's bytes.
    for name, size in entry["files"].items():
        saved = tmp_path / "np.save.npy"
        np.save(saved, ds.batch(np.arange(8))[name.removesuffix(".npy")], allow_pickle=False)
        assert (
            tmp_path / "shard-00000" / name
        ).read_bytes() == saved.read_bytes() and size == saved.stat().st_size


# --- the phases of a run, and tokenizing in parallel --------------------------------------------


def bpe_tokenizer(folder: Path) -> Any:
    """A byte-level BPE tokenizer trained here on the built-in corpus's first files (no download)."""
    tk = pytest.importorskip("tokenizers")
    from ul2.sources import stdlib_documents
    from ul2.tokenizers import HFTokenizer

    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    specials = ["<pad>", "</s>", "<unk>", *(f"<extra_id_{k}>" for k in range(100))]
    trainer = tk.trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([d.decode("utf-8", "replace") for d in stdlib_documents(300_000)], trainer)
    tok.save(str(folder / "tokenizer.json"))
    return HFTokenizer(folder / "tokenizer.json")


def test_parallel_tokenizing_writes_the_shards_of_sequential_tokenizing(tmp_path: Path) -> None:
    from ul2.sources import stdlib_documents, tokenize

    tok = bpe_tokenizer(tmp_path)
    docs = [*stdlib_documents(400_000), b"", "caf\u00e9 " * 50]  # an empty one is skipped
    # The reference: each document alone through encode, one after another.
    one_by_one = [tok.encode(d.decode("utf-8", "replace") if isinstance(d, bytes) else d) for d in docs]
    want = np.concatenate([ids for ids in one_by_one if len(ids)])
    folders = {}
    for workers in (1, 3, 8):
        corpus = tokenize(docs, tok, batch_size=5, workers=workers)
        assert corpus.tokens.tobytes() == want.tobytes() and corpus.empty_documents == 1, workers
        phase = corpus.phases["tokenize"]
        assert (
            phase["tokens"] == len(want) and phase["documents"] == len(docs) and phase["workers"] == workers
        )
        assert phase["bytes"] == sum(len(d) if isinstance(d, bytes) else len(d.encode()) for d in docs)
        ds = ul2.DenoisingDataset(
            corpus.tokens, ul2.presets.t5(), sentinels=tok.sentinels(), inputs_length=64, eos_id=tok.eos_id
        )
        folders[workers] = tmp_path / f"w{workers}"
        prepare(ds, folders[workers], shard_size=64, phases=corpus.phases)
    for workers in (3, 8):
        a, b = files(folders[1]), files(folders[workers])
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] for k in a if k != "manifest.json"), workers


def test_the_phases_add_up_to_the_run_and_each_resumed_run_has_its_own(tmp_path: Path) -> None:
    from ul2.sources import stdlib_documents, tokenize

    corpus = tokenize(stdlib_documents(200_000), TOK, workers=2)
    out = tmp_path / "out"
    first = prepare(dataset(corpus.tokens), out, shard_size=64, max_shards=3, phases=corpus.phases)
    seen: list[dict[str, Any]] = []
    last = prepare(
        dataset(corpus.tokens),
        out,
        shard_size=64,
        phases=corpus.phases,
        progress=lambda entry, manifest: seen.append(json.loads(json.dumps(manifest["runs"][-1]))),
    )
    assert last["complete"] and len(first["runs"]) == 1 and len(last["runs"]) == 2
    runs = json.loads((out / "manifest.json").read_text())["runs"]
    assert [r["shards"] for r in runs] == [3, last["num_shards"] - 3]
    for run in runs:
        phases = run["phases"]
        assert list(phases) == ["read", "tokenize", "denoise", "write", "other"]
        assert sum(p["seconds"] for p in phases.values()) == pytest.approx(run["seconds"], rel=1e-9)
        assert phases["tokenize"]["tokens"] == len(corpus.tokens) and phases["tokenize"]["bytes"] > 0
        assert phases["denoise"]["tokens_per_s"] > 0 and phases["write"]["bytes_per_s"] > 0
    # The shards' figures add up to the counts; the manifest's shard entries hold no timings.
    written = [s for s in last["shards"] if s["index"] >= 3]
    assert runs[1]["phases"]["denoise"]["tokens"] == sum(s["tokens_used"] for s in written)
    assert runs[1]["phases"]["write"]["bytes"] == sum(s["bytes"] for s in written)
    assert all("seconds" not in s for s in last["shards"])
    # The progress callback saw the run grow shard by shard.
    assert [r["shards"] for r in seen] == list(range(1, len(written) + 1))
    # Resumed in three runs, the shards are those of one run.
    whole = tmp_path / "whole"
    prepare(dataset(corpus.tokens), whole, shard_size=64)
    a, b = files(whole), files(out)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a if k != "manifest.json")


def test_bad_phases_and_workers_name_the_argument(tmp_path: Path) -> None:
    from ul2.sources import tokenize

    nan, inf = float("nan"), float("inf")
    for bad in (
        {"tokenize": {}},
        {"tokenize": {"seconds": -1.0}},
        {"tokenize": {"seconds": nan}},
        {"tokenize": {"seconds": inf}},
        {"write": {"seconds": 1.0}},
        [("a", 1)],
    ):
        with pytest.raises(ValueError, match="phases="):
            prepare(dataset(stream()), tmp_path / "out", shard_size=8, phases=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()
    for workers in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers="):
            tokenize([b"abc"], TOK, workers=workers)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size="):
        tokenize([b"abc"], TOK, batch_size=0)


def test_parallel_tokenizing_with_sentencepiece_is_sequential_tokenizing(tmp_path: Path) -> None:
    spm = pytest.importorskip("sentencepiece")
    from ul2.sources import stdlib_documents, tokenize
    from ul2.tokenizers import SentencePieceTokenizer

    docs = [d.decode("utf-8", "replace") for d in stdlib_documents(200_000)]
    (tmp_path / "train.txt").write_text("\n".join(docs))
    spm.SentencePieceTrainer.train(
        input=str(tmp_path / "train.txt"),
        model_prefix=str(tmp_path / "sp"),
        vocab_size=400,
        user_defined_symbols=[f"<extra_id_{k}>" for k in range(100)],
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        minloglevel=2,
    )
    tok = SentencePieceTokenizer(tmp_path / "sp.model")
    want = np.concatenate([tok.encode(d) for d in docs])
    for workers in (1, 4):
        corpus = tokenize(docs, tok, batch_size=3, workers=workers)
        assert corpus.tokens.tobytes() == want.tobytes(), workers
