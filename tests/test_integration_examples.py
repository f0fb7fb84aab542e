"""The integration examples run as documented, on tiny sizes (CPU, seconds, nothing downloaded);
the training examples train real (tiny, randomly initialised) models whose loss falls."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(
        bool(missing), reason=f"not installed: {', '.join(missing)} (pip install 'ul2[integrations]')"
    )


def run(script: str, *args: str, timeout: int = 240) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def first_and_last(out: str) -> tuple[float, float]:
    m = re.search(r"loss first5 ([\d.]+) last5 ([\d.]+)", out)
    assert m, out[-2000:]
    return float(m.group(1)), float(m.group(2))


def assert_every_denoiser_learns(out: str, denoisers: int) -> None:
    """Each --log-every window's per-denoiser losses, and each denoiser's loss falling between
    the first and last steps (the table at the end)."""
    windows = re.findall(r"^  per denoiser((?: \d:[\d.]+ ?)+)$", out, re.M)
    assert len(windows) == 5 and all(len(w.split()) == denoisers for w in windows), out[-1500:]
    table = re.findall(r"^\S.*? \+5 prompt +([\d.]+) +([\d.]+)$", out, re.M)
    assert len(table) == denoisers and all(float(last) < float(first) for first, last in table), out[-1500:]


def test_import_ul2_needs_only_numpy() -> None:
    code = (
        "import sys, ul2; heavy = {'torch', 'transformers', 'grain', 'pyarrow', 'ray', 'datasets', 'jax'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@needs("torch", "transformers")
def test_train_t5_loss_falls() -> None:
    out = run(
        "train_t5.py",
        "--steps",
        "50",
        "--batch-size",
        "8",
        "--inputs-length",
        "64",
        "--targets-length",
        "64",
        "--max-bytes",
        "300000",
    )
    assert len(re.findall(r"^step +\d+ +loss", out, re.M)) == 50
    first, last = first_and_last(out)
    assert last < first - 0.5, out[-1500:]
    assert_every_denoiser_learns(out, 7)  # ul2()


@needs("torch", "transformers")
def test_train_prefix_lm_loss_falls_with_a_bidirectional_prefix() -> None:
    out = run(
        "train_prefix_lm.py",
        "--steps",
        "50",
        "--batch-size",
        "8",
        "--sequence-length",
        "96",
        "--max-bytes",
        "300000",
        "--workers",
        "2",
    )
    assert len(re.findall(r"^step +\d+ +loss", out, re.M)) == 50
    first, last = first_and_last(out)
    assert last < first - 0.5, out[-1500:]
    assert_every_denoiser_learns(out, 4)  # ul2r()


@needs("torch", "transformers", "datasets", "accelerate")
@pytest.mark.parametrize("model", ["t5", "llama"])
def test_hf_trainer_example(model: str) -> None:
    out = run(
        "hf_trainer.py",
        "--model",
        model,
        "--steps",
        "12",
        "--batch-size",
        "4",
        "--length",
        "64",
        "--max-bytes",
        "100000",
    )
    assert "12 steps;" in out
    first, last = first_and_last(out)
    assert last < first, out[-1500:]


@needs("grain")
def test_grain_pipeline_example() -> None:
    out = run(
        "grain_pipeline.py",
        "--hosts",
        "2",
        "--batch-size",
        "4",
        "--inputs-length",
        "64",
        "--max-bytes",
        "40000",
    )
    assert "host 0 batch 0: {'encoder_input_tokens': ((4, 64), 'int32')" in out
    assert "host 1: " in out
    m = re.search(r"(\d+) of (\d+) examples in one epoch over 2 hosts", out)
    assert m and 0 < int(m.group(2)) - int(m.group(1)) < 2 * 4  # only incomplete batches dropped


@needs("ray", "pyarrow")
def test_ray_preprocess_example(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    out = run("ray_preprocess.py", str(tmp_path / "out"), "--rows", "300", "--inputs-length", "64")
    m = re.search(r"(\d+) rows of \d+ tokens -> (\d+) examples", out)
    assert m and m.group(1) == m.group(2) == "300", out
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 300 and "input_ids" in table.column_names and "id" in table.column_names


@needs("torch", "transformers", "grain", "pyarrow", "datasets", "ray")
def test_readme_integration_snippets_run(tmp_path: Path) -> None:
    readme = (EXAMPLES.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
    code = "\n".join(re.findall(r"```python\n(.*?)```", section, re.S))
    assert code.count("import ul2.") == 6  # torch, hf, grain and jax, arrow, ray
    code += "\nprint(sorted(batch), denoised.num_rows)\n"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "'encoder_input_tokens'" in done.stdout and done.stdout.strip().endswith(" 200")
    assert list((tmp_path / "ul2-denoised").glob("*.parquet"))
