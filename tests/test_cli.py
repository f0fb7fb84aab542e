"""The ``ul2`` command line end to end: every subcommand on small inputs, the files it writes and
their contents, resumable ``prepare``, tokenizers built here (nothing is downloaded), and
errors that are one line on stderr."""

from __future__ import annotations

import ast
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ul2
from ul2 import cli
from ul2.sources import ByteTokenizer

pytest.importorskip("click")
pytest.importorskip("rich")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``ul2 ARGS`` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in args])
    code = exc.value.code
    out, err = capsys.readouterr()
    return (code if isinstance(code, int) else 1), out, err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ul2: error: ") and "Traceback" not in err
    return lines[0]


TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 30,
    "Pack my box with five dozen liquor jugs! " * 25,
    "def main():\n    return sum(range(10))\n" * 20,
]
RECORDS = [
    {"text": f"record {i}: " + "lorem ipsum dolor sit amet, " * (15 + 5 * i), "id": i} for i in range(4)
]


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Any]:
    """Two text files and a JSONL file, with the documents they hold."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    paths = []
    for i, t in enumerate(TEXTS[:2]):
        p = folder / f"doc{i}.txt"
        p.write_text(t)
        paths.append(p)
    jl = folder / "records.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n")
    paths.append(jl)
    docs = [*TEXTS[:2], *(r["text"] for r in RECORDS)]
    return {"paths": [str(p) for p in paths], "docs": docs}


def byte_stream(docs: list[str], separator: int | None = 1) -> np.ndarray:
    """The documents as ByT5 ids, joined with ``separator`` (what prepare should see)."""
    tok = ByteTokenizer()
    parts: list[np.ndarray] = []
    for i, d in enumerate(docs):
        if i and separator is not None:
            parts.append(np.array([separator], np.int32))
        parts.append(tok.encode(d))
    return np.concatenate(parts)


# --- demo ----------------------------------------------------------------------------------------


def test_demo_shows_plan_examples_statistics_throughput_and_writes_png(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    png = tmp_path / "ul2-demo.png"
    code, out, err = run(capsys, "demo", "--samples", "1400", "--png", png)
    assert code == 0, err
    tok = ByteTokenizer()
    labels = [d.label for d in ul2.presets.ul2(prompts=tok.encode).denoisers]
    assert len(labels) == 7
    # The plan table, then exactly one example per denoiser, each with inputs and targets.
    examples = [line for line in out.splitlines() if line.startswith("● ")]
    assert [line[2:].split("  sample")[0] for line in examples] == labels
    assert out.count("  inputs : ") == out.count("  targets: ") == 7
    for label in labels:
        assert label in out.split("One example per denoiser")[0]  # in the plan table
    assert "[NLU]" in out and "[NLG]" in out and "[S2S]" in out  # prompts decoded as text
    assert "<extra_id_0>" in out and "</s>" in out
    # The statistics table with every statistic and p-values.
    stats = out.split("Empirical vs exact")[1]
    for what in (
        "noise density",
        "spans",
        "span-length law",
        "prefix law",
        "denoiser rates",
    ):
        assert what in stats
    assert "C(N-j-1, n-2) / C(N-1, n-1)" in stats and "uniform on [1, 505]" in stats
    assert "Throughput" in out and "M tokens/s" in out
    # The PNG: a valid image of a sensible size.
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    image = pytest.importorskip("matplotlib.image").imread(png)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600
    assert f"wrote {png}" in out.replace("\n", "")


def test_demo_without_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "demo", "--samples", "700", "--no-plot", "--inputs-length", "256")
    assert code == 0
    assert not list(tmp_path.iterdir())
    assert out.count("● ") == 7


# --- plan ----------------------------------------------------------------------------------------


def test_plan_json_is_the_library_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--preset", "t5", "--inputs-length", "512", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert (row["raw_length"], row["targets_length"]) == (568, 114)  # T5's (512, .15, 3)
    code, out, _ = run(
        capsys, "plan", "--preset", "ul2r", "--sequence-length", "1024", "--json", "--on-overflow", "cap"
    )
    tok = ByteTokenizer()
    expected = ul2.plan(
        ul2.presets.ul2r(prompts=tok.encode), sentinels=tok.sentinels(on_overflow="cap"), sequence_length=1024
    )
    got = json.loads(out)
    assert [
        (r["denoiser"], r["raw_length"], r["inputs_length"], r["targets_length"], r["spans"]) for r in got
    ] == [(r.denoiser.label, r.raw_length, r.inputs_length, r.targets_length, r.spans) for r in expected]
    assert sum(r["rate"] for r in got) == pytest.approx(1.0)


def test_plan_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "plan", "--preset", "ul2_paper", "--on-overflow", "cap", "--no-prompts")
    assert code == 0
    assert "PrefixLM(0.25)" in out and "SpanCorruption(64, 0.5)" in out and "+5 prompt" not in out
    assert "mean raw tokens per example" in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["plan", "--tokenizer", "missing.json"], "no such file"),
        (["preview", "no/such/file.txt"], "no/such/file.txt: no such file"),
    ],
)
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    code, out, err = run(capsys, *args)
    assert code == 1
    assert needle in one_line_error(err)
    assert out == ""


def test_bad_option_is_one_line_with_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--preset", "bogus")
    assert code == 2
    assert "'bogus' is not one of" in one_line_error(err)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["plan", "--inputs-length", "0"], "--inputs-length"),
        (["plan", "--targets-length", "-1"], "--targets-length"),
        (["plan", "--sequence-length", "0"], "--sequence-length"),
        (["plan", "--seed", "-1"], "--seed"),
        (["preview", "--seed", "-1"], "--seed"),
        (["plan", "--seed", str(2**64)], "--seed"),
        (["plan", "--extra-ids", "0"], "--extra-ids"),
        (["preview", "--count", "0"], "--count"),
        (["preview", "--count", "-3"], "--count"),
        (["preview", "--width", "0"], "--width"),
        (["demo", "--inputs-length", "0"], "--inputs-length"),
        (["demo", "--samples", "0"], "--samples"),
        (["demo", "--seed", "-1"], "--seed"),
        (["stats", "--samples", "0"], "--samples"),
        (["prepare", "--out", "x", "--shard-size", "0"], "--shard-size"),
        (["prepare", "--out", "x", "--max-items", "0"], "--max-items"),
        (["prepare", "--out", "x", "--max-shards", "-1"], "--max-shards"),
        (["plan", "--inputs-length", "64", "--sequence-length", "64"], "--sequence-length"),
        (["plan", "--sequence-length", "64", "--format", "hf"], "--format"),
        (["plan", "--format", "decoder"], "--format"),
        (["plan", "--inputs-length", "6", "--on-overflow", "cap"], "--inputs-length"),
    ],
)
def test_bad_options_exit_2_before_any_work(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    option: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args)
    line = one_line_error(err)
    assert code == 2 and out == ""
    assert line.startswith(f"ul2: error: Invalid value for '{option}'"), line
    assert "_length=" not in line and "_" not in line.split("'")[1]  # CLI spelling, not Python's
    assert not list(tmp_path.iterdir())


# --- defaults that work together: ByT5's 125 sentinels and ul2() at 512 ---------------------------


def test_default_options_work_on_every_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    for args in (
        ["plan"],
        ["preview", *corpus["paths"]],
        ["stats", *corpus["paths"], "--samples", "20"],
        ["prepare", *corpus["paths"], "--out", tmp_path / "out", "-q"],
    ):
        code, _, err = run(capsys, *args)
        assert code == 0, (args, err)
        (note,) = [line for line in err.splitlines() if line.startswith("ul2: ")]
        # One line: what the CLI does, by how much the mean span moves, and the other choices.
        assert note.startswith("ul2: note: ") and "125 sentinels" in note and "127 spans" in note, note
        assert re.search(r"mean span 3 → 3\.0\d", note), note
        assert "--on-overflow error" in note and "Sentinels" not in note and "on_overflow" not in note
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["config"]["dataset"]["sentinels"]["on_overflow"] == "cap" and manifest["complete"]


def test_on_overflow_error_hint_names_cli_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--on-overflow", "error")
    line = one_line_error(err)
    assert code == 1 and "127 noise spans need 127 sentinel ids but only 125" in line
    assert "--on-overflow cap" in line and "--inputs-length" in line
    assert "Sentinels.t5" not in line and "on_overflow=" not in line and "--on-overflow error" not in line


def test_on_overflow_cap_warns_when_the_mean_span_moves_far(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "plan", "--on-overflow", "cap")
    assert code == 0 and err == ""  # 3 -> 3.05: close to the requested mean span
    code, _, err = run(capsys, "plan", "--on-overflow", "cap", "--inputs-length", "2048")
    assert code == 0
    (line,) = err.splitlines()
    assert line.startswith("ul2: warning: ") and "SpanCorruption(3, 0.5)" in line
    assert re.search(r"mean span 3 → 15\.\d", line), line
    assert "--inputs-length" in line and "--on-overflow cap" not in line
    assert "--inputs-length 2048" not in line


def test_bad_tokenizer_files_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "plan", "--tokenizer", bad)
    assert code == 1 and "not a Hugging Face tokenizer.json" in one_line_error(err)
    bad_model = tmp_path / "x.model"
    bad_model.write_bytes(b"\x00garbage")
    code, _, err = run(capsys, "plan", "--tokenizer", bad_model)
    assert code == 1 and "not a SentencePiece model" in one_line_error(err)


def test_python_m_ul2_error_has_no_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ul2", "preview", str(tmp_path / "nope.txt")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "nope.txt: no such file or directory" in one_line_error(done.stderr)


# --- preview -------------------------------------------------------------------------------------


def test_preview_files_one_example_per_denoiser(
    capsys: pytest.CaptureFixture[str], corpus: dict[str, Any]
) -> None:
    code, out, err = run(
        capsys,
        "preview",
        *corpus["paths"],
        "--preset",
        "ul2",
        "--inputs-length",
        "128",
        "--on-overflow",
        "cap",
        "--format",
        "seqio",
    )
    assert code == 0, err
    assert "3 file(s): 6 documents" in out
    assert out.count("● ") == 7
    assert out.count("seqio: encoder_input_tokens[128]") == 7
    assert "quick brown" in out or "liquor" in out or "lorem" in out


def test_preview_count_and_decoder_format(capsys: pytest.CaptureFixture[str], corpus: dict[str, Any]) -> None:
    code, out, _ = run(
        capsys,
        "preview",
        corpus["paths"][2],
        "--preset",
        "ul2r",
        "--sequence-length",
        "128",
        "--count",
        "3",
        "--on-overflow",
        "cap",
    )
    assert code == 0
    assert out.count("● ") == 3
    assert "decoder: input_ids[128], attention_mask[128], labels[128], prefix_lengths" in out
    for k in range(3):
        assert f"sample {k}," in out


def test_preview_jsonl_field_errors(capsys: pytest.CaptureFixture[str], corpus: dict[str, Any]) -> None:
    code, _, err = run(capsys, "preview", corpus["paths"][2], "--field", "body")
    assert code == 1 and "no field 'body'" in one_line_error(err)


# --- tokenizers built here -----------------------------------------------------------------------


def hf_tokenizer(path: Path) -> Path:
    tk = pytest.importorskip("tokenizers")
    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    specials = ["<pad>", "</s>", "<unk>", *(f"<extra_id_{k}>" for k in range(100))]
    trainer = tk.trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXTS + [r["text"] for r in RECORDS], trainer)
    out = path / "tokenizer.json"
    tok.save(str(out))
    return out


def sp_model(path: Path, extra_ids: bool = True) -> Path:
    spm = pytest.importorskip("sentencepiece")
    text = path / "sp-train.txt"
    text.write_text("\n".join(TEXTS + [r["text"] for r in RECORDS]) * 3)
    prefix = path / ("sp" if extra_ids else "sp-plain")
    symbols = [f"<extra_id_{k}>" for k in range(100)] if extra_ids else []
    spm.SentencePieceTrainer.train(
        input=str(text),
        model_prefix=str(prefix),
        vocab_size=80 + len(symbols),
        user_defined_symbols=symbols,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def test_hf_tokenizer_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    from ul2.tokenizers import HFTokenizer, load_tokenizer

    path = hf_tokenizer(tmp_path)
    tok = load_tokenizer(str(path))
    assert isinstance(tok, HFTokenizer)
    ref = pytest.importorskip("tokenizers").Tokenizer.from_file(str(path))
    assert tok.sentinel_ids == tuple(ref.token_to_id(f"<extra_id_{k}>") for k in range(100))
    assert (tok.eos_id, tok.pad_id) == (ref.token_to_id("</s>"), ref.token_to_id("<pad>"))
    ids = tok.encode(TEXTS[0])
    assert ids.dtype == np.int32 and tok.decode(ids) == TEXTS[0]
    code, out, err = run(
        capsys,
        "preview",
        *corpus["paths"],
        "--tokenizer",
        path,
        "--preset",
        "t5",
        "--inputs-length",
        "64",
        "--count",
        "2",
    )
    assert code == 0, err
    assert out.count("● ") == 2 and "<extra_id_0>" in out
    code, out, _ = run(
        capsys,
        "prepare",
        *corpus["paths"],
        "--tokenizer",
        path,
        "--preset",
        "t5",
        "--inputs-length",
        "64",
        "--shard-size",
        "8",
        "--out",
        tmp_path / "hf-out",
        "-q",
    )
    assert code == 0
    manifest = json.loads((tmp_path / "hf-out" / "manifest.json").read_text())
    assert manifest["config"]["job"]["tokenizer"]["kind"] == "tokenizer.json"
    total = sum(len(tok.encode(d)) for d in corpus["docs"])
    assert manifest["config"]["job"]["corpus"]["tokens"] == total


def test_sentencepiece_model(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    from ul2.tokenizers import SentencePieceTokenizer, load_tokenizer

    path = sp_model(tmp_path)
    tok = load_tokenizer(str(path))
    assert isinstance(tok, SentencePieceTokenizer)
    assert len(tok.sentinel_ids) == 100 and tok.eos_id == 1
    assert tok.decode(tok.encode("lorem ipsum dolor")) == "lorem ipsum dolor"
    code, out, err = run(
        capsys,
        "preview",
        *corpus["paths"],
        "--tokenizer",
        path,
        "--preset",
        "t5",
        "--inputs-length",
        "64",
        "--count",
        "1",
    )
    assert code == 0, err
    assert "<extra_id_0>" in out
    # A model without <extra_id_k> pieces: one line asking for --extra-ids, or seqio's layout with it.
    plain = sp_model(tmp_path, extra_ids=False)
    code, _, err = run(capsys, "plan", "--tokenizer", plain, "--preset", "t5")
    assert code == 1 and "--extra-ids" in one_line_error(err)
    tok2 = load_tokenizer(str(plain), extra_ids=10)
    size = tok2.vocab_size - 10
    assert tok2.sentinel_ids == tuple(size + 9 - k for k in range(10))
    code, out, _ = run(
        capsys,
        "plan",
        "--tokenizer",
        plain,
        "--extra-ids",
        "10",
        "--preset",
        "t5",
        "--inputs-length",
        "32",
        "--json",
    )
    assert code == 0 and json.loads(out)[0]["sentinels"] <= 10


# --- stats ---------------------------------------------------------------------------------------


def test_stats_json_check_and_png(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    png = tmp_path / "stats.png"
    code, out, err = run(
        capsys,
        "stats",
        "--synthetic",
        "--preset",
        "ul2r",
        "--sequence-length",
        "256",
        "--samples",
        "900",
        "--json",
        "--png",
        png,
        "--check",
    )
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 900 and report["budget"]["sequence_length"] == 256
    stats_rows = report["rows"]
    assert {r["statistic"] for r in stats_rows} >= {"span-length law", "prefix law", "denoiser rates"}
    assert all(r["pvalue"] > 1e-3 for r in stats_rows if r["pvalue"] is not None)
    assert png.read_bytes()[:8] == PNG_SIGNATURE


def test_stats_table_on_files(capsys: pytest.CaptureFixture[str], corpus: dict[str, Any]) -> None:
    code, out, _ = run(
        capsys, "stats", *corpus["paths"], "--preset", "t5", "--inputs-length", "64", "--samples", "50"
    )
    assert code == 0
    assert "3 file(s): 6 documents" in out and "span-length law" in out
    assert "50 examples" in out
    # More samples than the corpus holds: all of them.
    code, out, _ = run(
        capsys, "stats", *corpus["paths"], "--preset", "t5", "--inputs-length", "64", "--samples", "100000"
    )
    n = ul2.DenoisingDataset(
        byte_stream(corpus["docs"]), ul2.presets.t5(), sentinels=ByteTokenizer().sentinels(), inputs_length=64
    ).num_samples
    assert code == 0 and f"{n} examples" in out


# --- prepare -------------------------------------------------------------------------------------


def load_shards(out: Path) -> dict[str, np.ndarray]:
    manifest = json.loads((out / "manifest.json").read_text())
    arrays: dict[str, list[np.ndarray]] = {}
    for shard in manifest["shards"]:
        for f in sorted((out / shard["path"]).iterdir()):
            arrays.setdefault(f.stem, []).append(np.load(f))
    return {k: np.concatenate(v) for k, v in arrays.items()}


def test_prepare_shards_and_manifest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys,
        "prepare",
        *corpus["paths"],
        "--out",
        out,
        "--preset",
        "ul2",
        "--inputs-length",
        "96",
        "--targets-length",
        "96",
        "--on-overflow",
        "cap",
        "--shard-size",
        "7",
        "--seed",
        "3",
    )
    assert code == 0, err
    assert "M tokens/s" in err and "complete" in stdout  # progress bar with tokens/s on stderr
    manifest = json.loads((out / "manifest.json").read_text())
    # The summary has a line per phase of the run the manifest records, and they add up to it.
    (this,) = manifest["runs"]
    assert list(this["phases"]) == ["read", "tokenize", "setup", "denoise", "write", "other"]
    assert sum(p["seconds"] for p in this["phases"].values()) == pytest.approx(this["seconds"])
    lines = stdout.split(" s:\n")[1].splitlines()
    assert [line.split()[0] for line in lines] == list(this["phases"])
    assert "M tokens/s" in lines[1] and "MB/s" in lines[1] and "M tokens/s" in lines[3] and "MB/s" in lines[4]
    stream = byte_stream(corpus["docs"])
    tok = ByteTokenizer()
    mixture = ul2.presets.ul2(prompts=tok.encode)
    ds = ul2.DenoisingDataset(
        stream,
        mixture,
        sentinels=tok.sentinels(on_overflow="cap"),
        inputs_length=96,
        targets_length=96,
        seed=3,
    )
    counts = manifest["counts"]
    # The counts add up to the corpus.
    assert manifest["config"]["job"]["corpus"]["tokens"] == sum(len(d.encode()) for d in corpus["docs"])
    assert manifest["config"]["job"]["corpus"]["documents"] == len(corpus["docs"])
    assert counts["stream_length"] == len(stream) == ds.stream_length
    assert counts["tokens_used"] + counts["tail"] == counts["stream_length"]
    assert counts["tail"] == ds.tail and counts["samples"] == counts["items"] == ds.num_samples
    assert sum(counts["denoisers"].values()) == ds.num_samples
    assert manifest["complete"] and manifest["num_shards"] == -(-ds.num_samples // 7) == len(
        manifest["shards"]
    )
    assert sum(s["items"][1] - s["items"][0] for s in manifest["shards"]) == ds.num_samples
    assert ul2.Mixture.from_dict(manifest["config"]["dataset"]["mixture"]) == mixture
    assert manifest["ul2_version"] == ul2.__version__
    assert manifest["config"]["dataset"]["seed"] == 3
    # Shard shapes, and contents equal to the dataset's items.
    for shard in manifest["shards"]:
        n = shard["items"][1] - shard["items"][0]
        ids = np.load(out / shard["path"] / "input_ids.npy")
        labels = np.load(out / shard["path"] / "labels.npy")
        assert ids.shape == (n, 96) and labels.shape == (n, 96) and ids.dtype == np.int32
        assert n == 7 or shard is manifest["shards"][-1]
    got = load_shards(out)
    want = ds.batch(np.arange(ds.num_samples))
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])
    assert np.bincount(got["denoiser"], minlength=7).tolist() == list(counts["denoisers"].values())


def test_prepare_resumes_byte_identical(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    args = [*corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--shard-size", "10", "-q"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert run(capsys, "prepare", *args, "--out", whole)[0] == 0
    code, out, _ = run(capsys, "prepare", *args, "--out", parts, "--max-shards", "2")
    assert code == 0 and "stopped after --max-shards 2" in out
    first = json.loads((parts / "manifest.json").read_text())
    assert not first["complete"] and [s["index"] for s in first["shards"]] == [0, 1]
    assert first["counts"]["tail"] is None
    # A leftover temporary shard from a crash is cleaned up, not counted.
    (parts / ".tmp-shard-00002-dead").mkdir()
    (parts / ".tmp-shard-00002-dead" / "input_ids.npy").write_bytes(b"junk")
    assert run(capsys, "prepare", *args, "--out", parts, "--max-shards", "1")[0] == 0
    code, out, _ = run(capsys, "prepare", *args, "--out", parts)
    assert code == 0 and "3 were already there" in out
    assert sorted(p.name for p in whole.iterdir()) == sorted(p.name for p in parts.iterdir())
    for f in sorted(whole.rglob("*.npy")):
        assert f.read_bytes() == (parts / f.relative_to(whole)).read_bytes(), f
    a = json.loads((whole / "manifest.json").read_text())
    b = json.loads((parts / "manifest.json").read_text())
    # Each run's figures are its own: one run wrote whole, three wrote parts.
    assert len(a.pop("runs")) == 1 and [r["shards"] for r in b.pop("runs")] == [2, 1, 7]
    a.pop("created")
    b.pop("created")
    assert a == b
    # A second run of a finished job writes nothing new.
    code, out, _ = run(capsys, "prepare", *args, "--out", parts)
    assert code == 0 and "this run 0 tokens" in out


def finished_shards(out: Path) -> int:
    """Shards recorded so far: in the manifest, and in the progress file while a run is going."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    progress = out / "progress.jsonl"
    lines = progress.read_text().count("\n") if progress.exists() else 0
    return len(manifest["shards"]) + lines


def interrupt_when(
    args: list[str], out: Path, ready: Callable[[Path], bool], sig: int
) -> tuple[int, str] | None:
    """Run ``ul2 prepare ARGS --out OUT`` in a subprocess and send it ``sig`` once ``ready(OUT)``:
    (exit status, stderr), or None if the run ended first. The child is stopped (SIGSTOP) when
    ``ready`` is seen and ``sig`` arrives as it goes on (SIGCONT), so that ``sig`` lands at that
    moment of the run, however fast the run and however late this process polls."""
    with subprocess.Popen(
        [sys.executable, "-m", "ul2", "prepare", *args, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None and not ready(out):
            time.sleep(0.001)
        proc.send_signal(signal.SIGSTOP)
        if proc.poll() is not None:  # ended before it could be stopped
            proc.communicate(timeout=30)
            return None
        proc.send_signal(sig)
        proc.send_signal(signal.SIGCONT)
        _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def interrupt_after(args: list[str], out: Path, shards: int, sig: int) -> tuple[int, str]:
    """``interrupt_when`` ``shards`` shards are finished. A fresh run (no OUT yet) that ends first
    (a fast machine, a starved test process) is started again, up to three times."""
    fresh = not out.exists()
    for _ in range(3 if fresh else 1):
        got = interrupt_when(args, out, lambda o: finished_shards(o) >= shards, sig)
        if got is not None:
            return got
        if fresh:
            shutil.rmtree(out)
    raise AssertionError(f"ul2 prepare ended before {shards} shards could be interrupted")


def test_prepare_interrupted_killed_and_resumed_is_byte_identical(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The built-in corpus in many small shards: Ctrl-C (SIGINT) mid-way, then a resumed run
    # killed (SIGKILL) mid-way, then a run to the end.
    args = ["--preset", "t5", "--inputs-length", "256", "--shard-size", "16", "--max-items", "4000", "-q"]
    parts = tmp_path / "parts"
    code, err = interrupt_after(args, parts, 3, signal.SIGINT)
    assert code == 130 and "run the same command again to resume" in one_line_error(err)
    state = json.loads((parts / "manifest.json").read_text())
    assert not state["complete"], "the run finished before it could be interrupted"
    done = len(state["shards"])
    assert done >= 3 and not (parts / "progress.jsonl").exists()  # Ctrl-C saved the manifest
    code, _ = interrupt_after(args, parts, done + 3, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not json.loads((parts / "manifest.json").read_text())["complete"]
    assert finished_shards(parts) > done and (parts / "progress.jsonl").exists()
    code, out, _ = run(capsys, "prepare", *args, "--out", parts)
    assert code == 0 and "were already there" in out
    assert not list(parts.glob(".tmp-*")) and not (parts / "progress.jsonl").exists()
    whole = tmp_path / "whole"
    assert run(capsys, "prepare", *args, "--out", whole)[0] == 0
    files = sorted(p.relative_to(whole) for p in whole.rglob("*.npy"))
    assert len(files) == 6 * state["num_shards"] == 6 * 250
    assert files == sorted(p.relative_to(parts) for p in parts.rglob("*.npy"))
    for f in files:
        assert (whole / f).read_bytes() == (parts / f).read_bytes(), f


PREPARE_MOMENTS: dict[str, Callable[[Path], bool]] = {
    # Tokenized and fingerprinted, the folder just made for the lock: no manifest yet, or just one.
    "folder made": lambda out: out.exists(),
    "manifest written": lambda out: (out / "manifest.json").exists(),
    "1 shard": lambda out: finished_shards(out) >= 1,
    "10 shards": lambda out: finished_shards(out) >= 10,
    "20 shards": lambda out: finished_shards(out) >= 20,
}


def test_prepare_ctrl_c_at_any_moment_is_130_and_resumes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    # The CI failure: a Ctrl-C that landed in numpy's ndarray.tofile became a TypeError, exit 1.
    args = [*corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--shard-size", "1", "-q"]
    whole = tmp_path / "whole"
    assert run(capsys, "prepare", *args, "--out", whole)[0] == 0
    want = {p.relative_to(whole): p.read_bytes() for p in whole.rglob("*.npy")}
    for i, (moment, ready) in enumerate(PREPARE_MOMENTS.items()):
        out = tmp_path / f"run{i}"
        got = interrupt_when(args, out, ready, signal.SIGINT)
        assert got is not None, f"{moment}: the run ended before it could be interrupted"
        code, err = got
        line = one_line_error(err)
        assert code == 130 and line.startswith("ul2: error: interrupted"), (moment, code, err)
        if (out / "manifest.json").exists():
            assert "run the same command again to resume" in line, (moment, line)
            assert not json.loads((out / "manifest.json").read_text())["complete"], moment
        else:
            assert line == f"ul2: error: interrupted before any shard was written to {out}", moment
        assert run(capsys, "prepare", *args, "--out", out)[0] == 0, moment
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*.npy")} == want, moment


def interrupt_in(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, then: Any = None) -> None:
    """Make ``module.name`` press Ctrl-C (a real SIGINT to this process) when called; ``then``
    (an exception) stands for a library that turns the KeyboardInterrupt into another error."""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def pressed(*args: Any, **kwargs: Any) -> Any:
        try:
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.01)  # the handler runs here, at the latest
        except KeyboardInterrupt:
            if then is None:
                raise
            raise then from None
        raise AssertionError("SIGINT raised no KeyboardInterrupt")

    monkeypatch.setattr(module, name, pressed)


def test_prepare_interrupted_while_tokenizing_says_so(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    corpus: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ul2.cli import prepare as command

    out = tmp_path / "o"
    args = ["prepare", *corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--out", out, "-q"]
    with monkeypatch.context() as m:
        interrupt_in(m, command, "load")
        code, _, err = run(capsys, *args)
    assert (
        code == 130
        and one_line_error(err) == f"ul2: error: interrupted before any shard was written to {out}"
    )
    assert not out.exists() and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert run(capsys, *args, "--max-shards", "1")[0] == 0
    with monkeypatch.context() as m:  # a resumed run, interrupted before it resumes
        interrupt_in(m, command, "load")
        code, _, err = run(capsys, *args)
    assert code == 130 and "run the same command again to resume" in one_line_error(err)


def test_a_ctrl_c_that_a_library_turns_into_another_error_is_still_130(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    corpus: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What numpy 2.4's ndarray.tofile did to a Ctrl-C that arrived in its os.PathLike check.
    import ul2.prepare

    out = tmp_path / "o"
    args = ["prepare", *corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--shard-size", "10"]
    swallowed = TypeError("expected str, bytes or os.PathLike object, not BufferedWriter")
    interrupt_in(monkeypatch, ul2.prepare, "write_shard", then=swallowed)
    code, _, err = run(capsys, *args, "--out", out, "-q")
    assert code == 130 and "run the same command again to resume" in one_line_error(err)
    monkeypatch.undo()
    # Without a Ctrl-C, the same error is an error (exit status 1), and an EOFError is not a Ctrl-C
    # (click turns both KeyboardInterrupt and EOFError into Abort).
    monkeypatch.setattr(ul2.prepare, "write_shard", lambda *a, **k: (_ for _ in ()).throw(swallowed))
    code, _, err = run(capsys, *args, "--out", out, "-q")
    assert code == 1 and one_line_error(err) == f"ul2: error: {swallowed}"
    monkeypatch.setattr(ul2.prepare, "write_shard", lambda *a, **k: (_ for _ in ()).throw(EOFError("cut")))
    code, _, err = run(capsys, *args, "--out", out, "-q")
    assert code == 1 and one_line_error(err).startswith("ul2: error: EOFError: cut")


def test_prepare_refuses_a_different_job(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    args = [*corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--out", tmp_path / "o", "-q"]
    assert run(capsys, "prepare", *args, "--max-shards", "0")[0] == 0
    code, _, err = run(capsys, "prepare", *args, "--seed", "1")
    assert code == 1 and "holds a different job (dataset.seed: 0 != 1)" in one_line_error(err)
    (tmp_path / "corpus" / "doc0.txt").write_text("changed text " * 100)
    code, _, err = run(capsys, "prepare", *args)
    assert code == 1 and "the inputs changed since this job started" in one_line_error(err)
    code, out, _ = run(capsys, "prepare", *args, "--overwrite")
    assert code == 0 and "complete" in out
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.bin").write_bytes(b"x")
    code, _, err = run(capsys, "prepare", *args[:-3], "--out", tmp_path / "other", "-q")
    assert code == 1 and "not a ul2 prepare folder" in one_line_error(err)


def test_prepare_overwrite_never_deletes_inputs_or_a_foreign_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    folder = tmp_path / "corpus"
    before = {p: p.read_bytes() for p in folder.iterdir()}
    args = ["--preset", "t5", "--inputs-length", "48", "-q", "--overwrite"]
    code, _, err = run(capsys, "prepare", *corpus["paths"], "--out", folder, *args)
    assert code == 1 and "holds an input" in one_line_error(err)
    code, _, err = run(capsys, "prepare", folder, "--out", folder / "shards", *args)
    assert code == 1 and "is inside the input folder" in one_line_error(err)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("export A=1")
    (home / "thesis.tex").write_text("\\documentclass{article}")
    code, _, err = run(capsys, "prepare", *corpus["paths"], "--out", home, *args)
    assert code == 1 and "not a ul2 prepare folder" in one_line_error(err)
    assert {p: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in home.iterdir()) == [".bashrc", "thesis.tex"]


def test_paths_are_checked_before_the_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    code, out, err = run(capsys, "prepare", "--out", tmp_path / "afile", "--preset", "t5")
    assert code == 2 and out == "" and "is a file" in one_line_error(err)
    missing = tmp_path / "no" / "such" / "plot.png"
    for args in (["stats", "--synthetic", "--samples", "50"], ["demo", "--samples", "50"]):
        code, out, err = run(capsys, *args, "--png", missing)
        assert code == 2 and out == "", err  # refused before printing anything
        assert f"the folder {missing.parent} does not exist" in one_line_error(err)


def test_prepare_respect_packed_decoder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    short = tmp_path / "corpus" / "short.jsonl"  # short documents, so that rows hold several examples
    records = [f"note {i}: " + "x y z " * (i % 7 + 1) for i in range(40)]
    short.write_text("".join(json.dumps({"text": r}) + "\n" for r in records))
    out = tmp_path / "packed"
    code, _, err = run(
        capsys,
        "prepare",
        *corpus["paths"],
        short,
        "--out",
        out,
        "--preset",
        "ul2r",
        "--sequence-length",
        "128",
        "--documents",
        "respect",
        "--pack",
        "--on-overflow",
        "cap",
        "--shard-size",
        "5",
        "-q",
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    c = manifest["counts"]
    tokens = sum(len(d.encode()) for d in [*corpus["docs"], *records])
    assert c["stream_length"] == tokens and c["tail"] == 0 and c["tokens_used"] == tokens
    assert c["samples"] > c["items"]  # several examples per packed row
    assert manifest["config"]["dataset"]["separator_id"] is None
    got = load_shards(out)
    assert got["input_ids"].shape == (c["items"], 128) and got["segment_ids"].shape == (c["items"], 128)
    assert manifest["features"]["segment_ids"]["shape"] == [None, 128]


def test_prepare_parquet(capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    args = [*corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--shard-size", "10", "-q"]
    assert run(capsys, "prepare", *args, "--out", tmp_path / "npy")[0] == 0
    assert run(capsys, "prepare", *args, "--out", tmp_path / "pq", "--output-format", "parquet")[0] == 0
    npy = load_shards(tmp_path / "npy")
    manifest = json.loads((tmp_path / "pq" / "manifest.json").read_text())
    tables = [pq.read_table(tmp_path / "pq" / s["path"]) for s in manifest["shards"]]
    assert all(
        t.num_rows == s["items"][1] - s["items"][0] for t, s in zip(tables, manifest["shards"], strict=True)
    )
    for name, want in npy.items():
        got = np.concatenate([np.array(t.column(name).to_pylist(), dtype=want.dtype) for t in tables])
        np.testing.assert_array_equal(got, want)


def test_prepare_lean_reads_back_as_the_full_shards(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, corpus: dict[str, Any]
) -> None:
    import ul2.shards

    args = [*corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--shard-size", "10", "-q"]
    assert run(capsys, "prepare", *args, "--out", tmp_path / "full")[0] == 0
    code, out, err = run(capsys, "prepare", *args, "--out", tmp_path / "lean", "--lean")
    assert code == 0, err
    assert re.search(r"bytes in shards, 1\.\d\dx the tokens used \([\d,]+ bytes as int32\), lean", out), out
    manifest = json.loads((tmp_path / "lean" / "manifest.json").read_text())
    assert manifest["config"]["lean"] is True
    assert manifest["counts"]["bytes_per_token_byte"] < 2  # 48-token rows; 512: tests/test_shards.py
    for full, lean in zip(
        ul2.shards.Shards(tmp_path / "full"), ul2.shards.Shards(tmp_path / "lean"), strict=True
    ):
        assert list(full) == list(lean)
        assert all(full[k].dtype == lean[k].dtype and full[k].tobytes() == lean[k].tobytes() for k in full)
    code, _, err = run(
        capsys, "prepare", *args, "--out", tmp_path / "lean", "--lean", "--output-format", "parquet"
    )
    assert code != 0 and "lean shards are .npy files only" in err


def test_prepare_builtin_corpus_counts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = run(
        capsys,
        "prepare",
        "--out",
        tmp_path / "b",
        "--preset",
        "t5",
        "--inputs-length",
        "256",
        "--max-items",
        "300",
        "--shard-size",
        "100",
        "-q",
    )
    assert code == 0
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (source,) = manifest["config"]["job"]["inputs"]
    assert source["builtin"] == "python-stdlib" and source["files"] > 100
    corpus = manifest["config"]["job"]["corpus"]
    assert manifest["counts"]["stream_length"] == corpus["tokens"] + corpus["documents"] - 1
    assert manifest["counts"]["items"] == 300
    raw = ul2.plan(ul2.presets.t5(), sentinels=ByteTokenizer().sentinels(), inputs_length=256)[0].raw_length
    assert manifest["counts"]["tokens_used"] == 300 * raw


def test_prepare_engine_ray_missing(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    corpus: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    code, _, err = run(capsys, "prepare", *corpus["paths"], "--out", tmp_path / "r", "--engine", "ray")
    assert code == 1 and "--engine ray needs Ray" in one_line_error(err)
    assert not (tmp_path / "r").exists()


def test_prepare_engine_ray_matches_local(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    corpus: dict[str, Any],
) -> None:
    """--engine ray on a real local Ray instance (two CPUs: shards written by worker processes,
    finishing in any order) writes the local engine's bytes, full and lean."""
    ray = pytest.importorskip("ray")
    args = [*corpus["paths"], "--preset", "t5", "--inputs-length", "48", "--shard-size", "10", "-q"]
    assert run(capsys, "prepare", *args, "--out", tmp_path / "local")[0] == 0
    assert run(capsys, "prepare", *args, "--lean", "--out", tmp_path / "local-lean")[0] == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        assert run(capsys, "prepare", *args, "--out", tmp_path / "ray", "--engine", "ray")[0] == 0
        ray_lean = ["--lean", "--out", tmp_path / "ray-lean", "--engine", "ray"]
        assert run(capsys, "prepare", *args, *ray_lean)[0] == 0
    finally:
        ray.shutdown()
    for local, remote in [("local", "ray"), ("local-lean", "ray-lean")]:
        files = sorted((tmp_path / local).rglob("*.npy"))
        assert files
        for f in files:
            assert f.read_bytes() == (tmp_path / remote / f.relative_to(tmp_path / local)).read_bytes()
    assert (tmp_path / "ray-lean" / "shard-00000" / "segments.npy").is_file()
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["complete"] and [s["index"] for s in manifest["shards"]] == list(
        range(manifest["num_shards"])
    )
    # The tasks' own denoise and write seconds reach the run's record from the workers.
    (last,) = manifest["runs"]
    assert last["shards"] == manifest["num_shards"]
    assert set(last["phases"]) == {"read", "tokenize", "setup", "denoise", "write", "other"}
    assert last["phases"]["denoise"]["tokens"] > 0 and last["phases"]["write"]["bytes"] > 0
    assert all(p["seconds"] >= 0 for p in last["phases"].values())


# --- bench ---------------------------------------------------------------------------------------


def test_bench_builtin(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "bench", "--quick")
    assert code == 0
    assert "built-in measurement" in out and "make bench" in out.replace("\n", " ")
    assert "Collator t5" in out and "DenoisingDataset ul2" in out and "M raw tokens/s" in out


def test_bench_in_a_checkout_is_the_installed_measurement(tmp_path: Path) -> None:
    # The package knows nothing of the repository: from the checkout's root too, ul2 bench
    # measures this installation and points to make bench for the suite.
    done = subprocess.run(
        [sys.executable, "-m", "ul2", "bench", "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.replace("\n", " ")
    assert "built-in measurement" in out and "make bench" in out
    assert "x NumPy" not in out and "benches/report.py" not in out


# --- import discipline ---------------------------------------------------------------------------


def test_import_ul2_stays_numpy_only() -> None:
    code = (
        "import sys, ul2, ul2.stats, ul2.testing, ul2.prepare, ul2.tokenizers, ul2.sources\n"
        "heavy = ['click', 'rich', 'matplotlib', 'tokenizers', 'sentencepiece', 'hypothesis', 'scipy', "
        "'pyarrow', 'ray']\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


PACKAGE = Path(ul2.__file__).resolve().parent


def test_no_module_imports_another_modules_private_name() -> None:
    # A name used across modules has a public owner; the native module's private names
    # (_ul2._plan, ...) are the package's own boundary and stay so.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module != "_ul2":
                found += [
                    f"{path.relative_to(PACKAGE)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "_ul2"
                ]
    assert found == []


def test_no_module_finds_files_by_its_own_location() -> None:
    # An installed package has no repository around it (ul2 bench ran benches/report.py by
    # path arithmetic from __file__).
    uses = [
        str(path.relative_to(PACKAGE))
        for path in sorted(PACKAGE.rglob("*.py"))
        if any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(ast.parse(path.read_text())))
    ]
    assert uses == []


def test_console_script_entry_point() -> None:
    # Declared in pyproject.toml's [project.scripts]; present once the package is (re)installed.
    from importlib.metadata import entry_points

    (ep,) = entry_points(group="console_scripts", name="ul2")
    assert ep.value == "ul2.cli:main"
    script = Path(sys.executable).parent / "ul2"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and ul2.__version__ in done.stdout


def test_parquet_and_gzip_inputs(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import gzip

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [f"row {i}: " + "alpha beta gamma " * (10 + i) for i in range(12)]
    pq.write_table(pa.table({"body": texts, "n": list(range(12))}), tmp_path / "rows.parquet")
    (tmp_path / "more.jsonl.gz").write_bytes(gzip.compress(b'{"body": "zipped json line"}\n'))
    (tmp_path / "plain.txt.gz").write_bytes(gzip.compress(b"zipped text file"))
    inputs = [tmp_path / "rows.parquet", tmp_path / "more.jsonl.gz", tmp_path / "plain.txt.gz"]
    out = tmp_path / "out"
    code, _, err = run(
        capsys,
        "prepare",
        *inputs,
        "--field",
        "body",
        "--preset",
        "t5",
        "--inputs-length",
        "32",
        "--out",
        out,
        "-q",
    )
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    docs = [*texts, "zipped json line", "zipped text file"]
    assert manifest["config"]["job"]["corpus"]["documents"] == len(docs)
    assert manifest["counts"]["stream_length"] == len(byte_stream(docs))
    assert [s["kind"] for s in manifest["config"]["job"]["inputs"]] == ["parquet", "jsonl", "text"]
    code, _, err = run(capsys, "preview", tmp_path / "rows.parquet")
    assert code == 1 and "no column 'text'" in one_line_error(err)


def bad_inputs(folder: Path) -> dict[str, tuple[Path, str]]:
    import gzip

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    zipped = gzip.compress(b'{"text": "hello"}\n' * 200)
    pq.write_table(pa.table({"text": ["alpha beta " * 50] * 2000}), folder / "whole.parquet")
    data = (folder / "whole.parquet").read_bytes()
    files = {
        "utf8": ("bad.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n', ":2: invalid UTF-8 (byte 0xe9"),
        "gzip": ("notgz.jsonl.gz", b"plain text, not gzip", ": corrupt gzip data (Not a gzipped file"),
        "truncated gzip": (
            "cut.txt.gz",
            zipped[: len(zipped) // 2],
            ": corrupt gzip data (Compressed file ended",
        ),
        "parquet": ("junk.parquet", b"PAR1 not really PAR1", ": not a readable Parquet file ("),
        "parquet body": (
            "cut.parquet",
            data[:4] + bytes(len(data) // 2) + data[len(data) // 2 + 4 :],
            ": not a readable Parquet file (",
        ),
    }
    out = {}
    for what, (name, content, needle) in files.items():
        (folder / name).write_bytes(content)
        out[what] = (folder / name, needle)
    return out


def test_unreadable_inputs_name_the_file_line_and_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for what, (path, needle) in bad_inputs(tmp_path).items():
        code, out, err = run(capsys, "preview", path, "--preset", "t5", "--inputs-length", "32")
        line = one_line_error(err)
        assert code == 1 and out == "", what
        assert line.startswith(f"ul2: error: {path}{needle}"), (what, line)
        assert "interrupted" not in line  # a truncated gzip once read as Ctrl-C


def test_a_failed_shard_write_names_the_shard(tmp_path: Path) -> None:
    # A real short write: the child may write files of at most 20 kB (RLIMIT_FSIZE), the first shard
    # needs 64 kB. The line names the shard and the system's reason (EFBIG here).
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "out"
    args = ["--preset", "t5", "--inputs-length", "64", "--max-items", "2000", "--shard-size", "1000", "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "ul2", "prepare", "--out", str(out), *args],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = one_line_error(done.stderr)
    assert done.returncode == 1
    assert f"{out / 'shard-00000'}: writing the shard failed (File too large)" in line and "disk" in line
    assert not list(out.glob(".tmp-*"))  # the partial shard is cleaned up


def test_a_manifest_that_is_not_an_object_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["--preset", "t5", "--inputs-length", "64", "--max-items", "20", "-q"]
    assert run(capsys, "prepare", "--out", out, *args)[0] == 0
    (out / "manifest.json").write_text("[]\n")
    code, _, err = run(capsys, "prepare", "--out", out, *args)
    line = one_line_error(err)
    assert code == 1 and f"{out / 'manifest.json'}: not a ul2 prepare manifest (a JSON list" in line
    assert "--overwrite" in line
    assert run(capsys, "prepare", "--out", out, *args, "--overwrite")[0] == 0


def test_same_inputs_under_another_path_spelling_are_the_same_job(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    corpus: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    args = ["--preset", "t5", "--inputs-length", "48", "--shard-size", "10", "--out", tmp_path / "o", "-q"]
    assert run(capsys, "prepare", *corpus["paths"], *args, "--max-shards", "1")[0] == 0
    monkeypatch.chdir(tmp_path / "corpus")
    relative = [f"./{Path(p).name}" for p in corpus["paths"]]
    code, out, err = run(capsys, "prepare", *relative, *args)
    assert code == 0, err
    assert "1 were already there" in out


def test_corpus_too_small_has_one_wording_with_the_minimum(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("tiny")
    need = ul2.plan(ul2.presets.t5(), sentinels=ByteTokenizer().sentinels(), inputs_length=64)[0].raw_length
    lines = set()
    for args in (["preview"], ["stats", "--samples", "10"], ["prepare", "--out", tmp_path / "o", "-q"]):
        code, _, err = run(capsys, *args, tiny, "--preset", "t5", "--inputs-length", "64")
        assert code == 1
        lines.add(one_line_error(err))
    assert lines == {
        f"ul2: error: the corpus is too small: 4 tokens, and one example of this plan needs at least {need}"
    }


def test_a_tokenizer_without_eos_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tk = pytest.importorskip("tokenizers")
    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<pad>", "<unk>", *(f"<extra_id_{k}>" for k in range(100))]
    trainer = tk.trainers.BpeTrainer(vocab_size=400, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(TEXTS, trainer)
    tok.save(str(tmp_path / "tokenizer.json"))
    code, _, err = run(capsys, "plan", "--tokenizer", tmp_path / "tokenizer.json", "--preset", "t5", "--json")
    assert code == 0
    (line,) = err.splitlines()
    assert line.startswith("ul2: warning: ") and "has no EOS token" in line and "tokenizer.json" in line


def test_help_is_whole_and_every_option_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    import click

    code, out, _ = run(capsys, "--help")
    commands = out.split("Commands:")[1].splitlines()
    assert code == 0 and not [line for line in commands if line.endswith("...")]  # none cut short
    group = cli.build()
    for name, command in group.commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                assert param.help, f"ul2 {name} {param.opts[0]} has no help"


def test_output_fits_80_columns_and_pipes_are_not_padded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "stats", "--synthetic", "--samples", "300", "--on-overflow", "cap")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    names = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│ Span")]
    assert len(set(names)) == 6, names  # six SpanCorruptions, told apart
    monkeypatch.delenv("COLUMNS")
    code, out, _ = run(capsys, "plan", "--on-overflow", "cap")
    assert code == 0 and not [line for line in out.splitlines() if line != line.rstrip()]
    code, out, _ = run(
        capsys,
        "prepare",
        "--out",
        tmp_path / "o",
        "--preset",
        "t5",
        "--inputs-length",
        "64",
        "--max-items",
        "30",
        "-q",
    )
    assert code == 0 and max(len(line) for line in out.splitlines()) <= 100, out


def test_no_arguments_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 0 and err == ""
    for command in ("demo", "plan", "preview", "stats", "prepare", "bench"):
        assert f"  {command} " in out
